import javax.management.*;
import javax.management.remote.*;

// Level <port> <logger> <level>: sets a broker logger's level through kafka.Log4jController.
public class Level {
  public static void main(String[] a) throws Exception {
    JMXConnector c = JMXConnectorFactory.connect(new JMXServiceURL("service:jmx:rmi:///jndi/rmi://127.0.0.1:" + a[0] + "/jmxrmi"));
    c.getMBeanServerConnection().invoke(new ObjectName("kafka:type=kafka.Log4jController"), "setLogLevel",
        new Object[]{a[1], a[2]}, new String[]{"java.lang.String", "java.lang.String"});
    c.close();
  }
}

import javax.management.*;
import javax.management.remote.*;
import java.util.*;

// Mbeans <port> <pattern> <attribute...>: one line per matching mbean of the broker, its key
// properties then the attributes, tab-separated ("-" when an attribute cannot be read).
public class Mbeans {
  public static void main(String[] a) throws Exception {
    JMXConnector c = JMXConnectorFactory.connect(new JMXServiceURL("service:jmx:rmi:///jndi/rmi://127.0.0.1:" + a[0] + "/jmxrmi"));
    MBeanServerConnection s = c.getMBeanServerConnection();
    for (ObjectName n : new TreeSet<>(s.queryNames(new ObjectName(a[1]), null))) {
      StringBuilder b = new StringBuilder(n.getKeyPropertyListString());
      for (int i = 2; i < a.length; i++) {
        try { b.append("\t").append(s.getAttribute(n, a[i])); } catch (Exception e) { b.append("\t-"); }
      }
      System.out.println(b);
    }
    c.close();
  }
}

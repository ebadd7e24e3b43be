"""Where the broker's CPU goes below full speed: a measurement, not part of ``make bench``.

One worker and one module runner (as in ``make bench``'s e2e), then 30 s phases at fixed
rates. Each phase prints CPU per component (ms per second of wall time), the broker's CPU by
thread kind (``threads``, from a JFR recording of the broker left in the run directory), the
broker's requests per second by type (its JMX ``RequestsPerSec`` counts), and the p50, p95
and p99 of completed orders. A phase named with an ``r`` (``100r``) also writes the broker's
request log (``kafka.request.logger`` at DEBUG, every completed request with its client id) to
``rate<phase>.log``, summed by ``request_log``.

Needs the JDK's ``javac``, ``jcmd`` and ``jfr`` (the broker is a local JVM of ``make up``): it
starts the broker's JMX agent on 127.0.0.1 and compiles the two small JMX clients beside this
file.
"""

"""Where the broker's CPU goes below full speed: a measurement, not part of ``make bench``.

One worker and one module runner (as in ``make bench``'s e2e), then 30 s phases at fixed
rates. Each phase prints CPU per component (ms per second of wall time), the broker's
requests per second by type (its JMX ``RequestsPerSec`` counts), the p50 of completed
orders, and leaves a JFR recording of the broker in the run directory. A phase named with an
``r`` (``100r``) also writes the broker's request log (``kafka.request.logger`` at DEBUG, every
completed request with its client id) to ``rate<phase>.log``, summed by ``request_log``.

Needs the JDK's ``javac`` and ``jcmd`` (the broker is a local JVM of ``make up``): it starts
the broker's JMX agent on 127.0.0.1 and compiles the two small JMX clients beside this file.
"""

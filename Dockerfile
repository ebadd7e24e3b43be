# syntax=docker/dockerfile:1
# The orderflow image: one image for the Faust worker, the module runner and the admin jobs.
#   docker build -t orderflow:0.1.0 .
# Stage 1 installs the project and its dependencies, at the exact versions of constraints.txt,
# into a virtualenv; stage 2 is the slim runtime with that virtualenv, run as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/orderflow
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY aggregates ./aggregates
COPY process_manager ./process_manager
COPY streams ./streams
# PIP_CONSTRAINT also pins what the isolated build of the project itself installs.
RUN PIP_CONSTRAINT=/src/constraints.txt /opt/orderflow/bin/pip install -c constraints.txt . \
 && /opt/orderflow/bin/pip check

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 orderflow \
 && useradd --system --uid 10001 --gid orderflow --home-dir /home/orderflow --create-home orderflow \
 && mkdir /data && chown orderflow:orderflow /data
COPY --from=build /opt/orderflow /opt/orderflow
ENV PATH=/opt/orderflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    WEB_BIND=0.0.0.0 \
    LOG_FORMAT=json
USER 10001:10001
WORKDIR /home/orderflow
VOLUME ["/data"]
# 6066: the worker's web view and /metrics; 7066: the module runner's /metrics.
EXPOSE 6066 7066
CMD ["faust", "-A", "streams.process.worker", "worker", "-l", "info"]

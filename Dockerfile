# healwatch as a container sidecar. Build: docker build -t healwatch:0.1.0 .
# Two stages: the first installs healwatch and its dependencies into a virtualenv, the second copies
# only that virtualenv onto a clean base, so no pip, setuptools, build files or caches ship.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/healwatch
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY rules ./rules
COPY healers ./healers
COPY exporters ./exporters
# Every dependency has a wheel for this Python, so nothing compiles; then the installers go, and
# numpy's own test suite with them.
RUN /opt/healwatch/bin/pip install . \
 && /opt/healwatch/bin/pip uninstall --yes pip setuptools \
 && rm -rf /opt/healwatch/lib/python3*/site-packages/numpy/*/tests \
           /opt/healwatch/lib/python3*/site-packages/numpy/tests

FROM ${PYTHON_IMAGE}
# tini reaps the orphans probes may leave and forwards signals to the agent; -s makes it a
# subreaper where it is not PID 1 (a pod sharing its process namespace has the pause process there).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/healwatch --create-home healwatch
COPY --from=build /opt/healwatch /opt/healwatch
# The root file system may be read-only (Kubernetes readOnlyRootFilesystem): bytecode was compiled
# at install time, nothing is written beside it.
ENV PATH=/opt/healwatch/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /var/lib/healwatch
# The state database (alert state, outbox, incident journal): mount a volume here to keep it.
VOLUME ["/var/lib/healwatch"]
EXPOSE 9877

# Outside the container the agent binds 127.0.0.1; inside it must listen on all addresses.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=2).status != 200)"]

ENTRYPOINT ["tini", "-s", "--", "healwatch", "run", "--listen", "0.0.0.0:9877"]
# Mount a config and pass it: docker run -v $PWD/agent.yaml:/etc/healwatch/agent.yaml healwatch:0.1.0 -c /etc/healwatch/agent.yaml
CMD []

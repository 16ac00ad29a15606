# healwatch as a container sidecar. Build: docker build -t healwatch .
FROM python:3.11-slim

# tini reaps the orphans probes may leave and forwards signals to the agent.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/healwatch --create-home healwatch

WORKDIR /opt/healwatch
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY rules ./rules
COPY healers ./healers
COPY exporters ./exporters
RUN pip install --no-cache-dir . && rm -rf /opt/healwatch

USER healwatch
WORKDIR /var/lib/healwatch
VOLUME ["/var/lib/healwatch"]
EXPOSE 9877

# Outside the container the agent binds 127.0.0.1; inside it must listen on all addresses.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=2).status != 200)"]

ENTRYPOINT ["tini", "--", "healwatch", "run", "--listen", "0.0.0.0:9877"]
# Mount a config and pass it: docker run -v $PWD/agent.yaml:/etc/healwatch/agent.yaml healwatch -c /etc/healwatch/agent.yaml
CMD []

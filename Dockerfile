FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY models ./models
COPY streams ./streams
# The user and the directories the named volumes are mounted on (docker-compose.yml): an
# empty named volume takes the owner of its mount point, so the workers can write to it.
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 riverops \
    && mkdir -p /artifacts /state \
    && chown riverops:riverops /artifacts /state
USER riverops
EXPOSE 9464
ENTRYPOINT ["riverops"]
CMD ["--help"]

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
# glibc gives each thread under contention its own malloc arena (up to 8 per core), and
# returns free memory of an arena only from the top of its heaps; a worker runs a thread per
# role plus librdkafka's threads. Two arenas: peak RSS ~2% lower in bench/memory_bounds.py
# consumers, no difference measured on the joiner alone (docs/reliability.md, Memory bounds)
ENV MALLOC_ARENA_MAX=2
EXPOSE 9464
ENTRYPOINT ["riverops"]
CMD ["--help"]

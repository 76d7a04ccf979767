FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY models ./models
COPY streams ./streams
RUN pip install --no-cache-dir . && useradd --system --uid 10001 riverops
USER riverops
EXPOSE 9464
ENTRYPOINT ["riverops"]
CMD ["--help"]

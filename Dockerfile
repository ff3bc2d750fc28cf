# Builds the ckan-webhooks binary and runs it on a small Debian image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
RUN cargo build --release --locked --bin ckan-webhooks

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ckan-webhooks /usr/local/bin/ckan-webhooks
USER nobody
ENTRYPOINT ["ckan-webhooks"]
CMD ["run"]

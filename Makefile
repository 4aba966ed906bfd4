# Docker: a FROM-scratch image from static binaries, and the compose clusters.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: build image up up-async down ps

build:
	mkdir -p build
	CGO_ENABLED=0 go build -trimpath -ldflags=-s -o build/ ./cmd/ringkvd ./cmd/ringkv

image: build
	docker build -t ringkv:latest -f Dockerfile build

up: image
	$(COMPOSE) up -d
	$(COMPOSE) ps

up-async: image
	$(COMPOSE) --profile async up -d
	$(COMPOSE) --profile async ps

down:
	$(COMPOSE) --profile async down -v

ps:
	$(COMPOSE) --profile async ps

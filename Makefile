# Docker: a FROM-scratch image from static binaries, and the compose clusters.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

SCALE = $(COMPOSE) -f docker-compose.yml -f docker-compose.scale.yml

.PHONY: build image up up-async up-secure up-wan up-scale down ps

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

up-secure: image
	$(COMPOSE) --profile secure up -d
	$(COMPOSE) --profile secure ps

up-wan: image
	$(COMPOSE) --profile wan up -d
	$(COMPOSE) --profile wan ps

up-scale: image
	$(SCALE) up -d
	$(SCALE) ps

down:
	$(SCALE) --profile async --profile secure --profile wan down -v

ps:
	$(SCALE) --profile async --profile secure --profile wan ps

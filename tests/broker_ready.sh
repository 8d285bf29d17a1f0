#!/usr/bin/env bash
# What the tests need of RabbitMQ, set up from a stock broker: AMQP on AMQP_URI's host and
# the management API (nameko's test fixtures make a fresh vhost per test through it).
# Stock RabbitMQ ships the management plugin disabled; enabling it is one local command.
set -euo pipefail

host=${BROKER_HOST:-127.0.0.1}
amqp_port=${BROKER_PORT:-5672}
api="http://${host}:15672/api/overview"

if ! (exec 3<>"/dev/tcp/${host}/${amqp_port}") 2>/dev/null; then
  echo "make test: RabbitMQ is not reachable on ${host}:${amqp_port}; start it with \`rabbitmq-server -detached\`" >&2
  exit 2
fi

if curl -fsS -u guest:guest "$api" >/dev/null 2>&1; then
  exit 0
fi

if ! command -v rabbitmq-plugins >/dev/null; then
  echo "make test: RabbitMQ's management API is not on ${host}:15672 and rabbitmq-plugins is not here to enable it; run \`rabbitmq-plugins enable rabbitmq_management\` on the broker" >&2
  exit 2
fi
echo "make test: enabling RabbitMQ's management plugin (the tests make a vhost per test through it)"
rabbitmq-plugins enable rabbitmq_management >/dev/null
for _ in $(seq 1 60); do
  curl -fsS -u guest:guest "$api" >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "make test: the management API did not come up on ${host}:15672 within 60 s" >&2
exit 2

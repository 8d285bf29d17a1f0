"""The events a service could not handle (its database's `dead_letters` collection, see
services/common/entrypoints.py EventHandler), listed or replayed once the cause is fixed:

    python -m services.common.dead_letters list certificates
    python -m services.common.dead_letters replay certificates [--reason R] [--id ID ...]

Replaying publishes each letter's event again to its handler's queue, as its first delivery
(with its original headers), with publisher confirms, and removes the letter once the broker
has it; handlers are idempotent on the event id, so a replay of an event that was handled
meanwhile changes nothing. It uses AMQP_URI and the service's MONGO_URI.
"""
from __future__ import annotations

import argparse
import json
import sys

DEAD_LETTERS = "dead_letters"
DELIVERY_HEADER = "vocreg.delivery"  # services/common/entrypoints.py


def collection(service: str, mongo_uri: str):
    import pymongo

    from services.common.mongo import database_name

    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    return client, client[database_name(mongo_uri, f"vocreg_{service}")][DEAD_LETTERS]


def select(reason: str | None = None, ids: list[str] | None = None) -> dict:
    query: dict = {}
    if reason:
        query["reason"] = reason
    if ids:
        query["_id"] = {"$in": ids}
    return query


def replay(letters, amqp_uri: str, query: dict) -> int:
    """Publish the selected letters back to their queues (each confirmed by the broker before
    its letter is removed); how many."""
    from kombu import Connection

    replayed = 0
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for letter in letters.find(query).sort("first_at", 1):
            headers = {**(letter.get("headers") or {}), DELIVERY_HEADER: 1}
            producer.publish(letter["body"].encode("utf-8"), exchange="",
                             routing_key=letter["queue"], headers=headers,
                             content_type=letter.get("content_type") or "application/json",
                             content_encoding="utf-8", delivery_mode=2, retry=True)
            letters.delete_one({"_id": letter["_id"]})
            replayed += 1
    return replayed


def main(argv=None) -> int:
    from services.common import config
    from services.common.spec import registry

    parser = argparse.ArgumentParser(prog="python -m services.common.dead_letters")
    parser.add_argument("action", choices=("list", "replay"))
    parser.add_argument("service", choices=list(registry()))
    parser.add_argument("--reason", help="only letters kept for this reason, e.g. "
                        "retries_exhausted, handler_failed, contract_violation")
    parser.add_argument("--id", action="append", dest="ids", help="only this letter (repeat)")
    args = parser.parse_args(argv)
    client, letters = collection(args.service, config.mongo_uri(args.service))
    try:
        query = select(args.reason, args.ids)
        if args.action == "list":
            for letter in letters.find(query, {"body": 0, "headers": 0}).sort("first_at", 1):
                print(json.dumps(letter, ensure_ascii=False, default=str))
            return 0
        print(f"replayed {replay(letters, config.amqp_uri(), query)} dead letter(s)")
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())

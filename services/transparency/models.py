"""The log's documents (database alias "transparency"). Leaves are inserted once and never
changed: a leaf's index is its primary key, so two writers cannot take the same place."""
from __future__ import annotations

import mongoengine as me

ALIAS = "transparency"


class LogLeaf(me.Document):
    meta = {
        "db_alias": ALIAS,
        "collection": "log_leaves",
        "indexes": [
            # One leaf per event, whatever the redeliveries and racing workers.
            {"fields": ["event_id"], "unique": True},
            ("subjects", "leaf_index"),
            # Catching up reads the leaves after the tree's size, in order: MongoDB walks _id_,
            # the local server's _id index is not an ordered one (it scanned the whole log on
            # every call): the key descending is (an index is walked either way).
            "-leaf_index",
        ],
    }

    leaf_index = me.IntField(primary_key=True, min_value=0)
    event_id = me.StringField(required=True)
    kind = me.StringField(required=True)
    subjects = me.ListField(me.StringField())
    # The leaf's bytes as text (domain.canonical): what is hashed, and what is answered.
    entry_json = me.StringField(required=True)
    logged_at = me.DateTimeField(required=True)


class LogHead(me.Document):
    """A signed tree head (RFC 6962 §3.5), one per tree size signed."""

    # The newest head: an ordered index on the size (see LogLeaf's "-leaf_index").
    meta = {"db_alias": ALIAS, "collection": "log_heads", "indexes": ["-tree_size"]}

    tree_size = me.IntField(primary_key=True, min_value=0)
    timestamp_ms = me.IntField(required=True)
    root_hash = me.BinaryField(required=True)
    signature = me.BinaryField(required=True)

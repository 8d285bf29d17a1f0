"""Keyset paging, the one way every List RPC pages: ordered by a unique key, the next page
starts after the last key seen. No skip, no count over the collection: each page costs the
same at any depth, given an index that serves the filter and the order."""
from __future__ import annotations


def keyset_page(queryset, key: str, size: int, after: str | None) -> tuple[list, str | None]:
    """(the page's documents, the key to continue after or None on the last page)."""
    if after is not None:
        queryset = queryset.filter(**{f"{key}__gt": after})
    rows = list(queryset.order_by(key).limit(size + 1))
    more = len(rows) > size
    rows = rows[:size]
    return rows, (getattr(rows[-1], key) if more and rows else None)

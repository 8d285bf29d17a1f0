"""Keyset paging, the one way every List RPC pages: ordered by a unique key, the next page
starts after the last key seen. No skip, no count over the collection: each page costs the
same at any depth, given an index that serves the filter and the order."""
from __future__ import annotations


def keyset_page(queryset, key: str, size: int, after: str | None,
                each_of: tuple[str, tuple] | None = None) -> tuple[list, str | None]:
    """(the page's documents, the key to continue after or None on the last page).

    each_of=(field, values): the filter "field is one of values". On the first page it is one
    `$in`, one range of an index (field, key). On the next ones, beside the key's range, it is
    asked as one query per value, merged by the key (MongoDB's SORT_MERGE plan, written out):
    each an equality and the key's range, one range of that index on any server, where the
    `$in` and the key's range would be two (the local server then scans the collection)."""
    if each_of is None:
        parts = [queryset]
    elif after is None:
        parts = [queryset.filter(**{f"{each_of[0]}__in": list(each_of[1])})]
    else:
        parts = [queryset.filter(**{each_of[0]: value}) for value in each_of[1]]
    rows = []
    for part in parts:
        if after is not None:
            part = part.filter(**{f"{key}__gt": after})
        rows.extend(part.order_by(key).limit(size + 1))
    if len(parts) > 1:
        rows.sort(key=lambda row: getattr(row, key))
    more = len(rows) > size
    rows = rows[:size]
    return rows, (getattr(rows[-1], key) if more and rows else None)

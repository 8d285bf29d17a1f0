"""Keyset paging, the one way every List RPC pages: ordered by a unique key, the next page
starts after the last key seen. No skip, no count over the collection: each page costs the
same at any depth, given an index that serves the filter and the order."""
from __future__ import annotations

from itertools import islice


def keyset_page(queryset, key: str, size: int, after: str | None,
                each_of: tuple[str, tuple] | None = None,
                keep=None) -> tuple[list, str | None]:
    """(the page's documents, the key to continue after or None on the last page).

    each_of=(field, values): the filter "field is one of values". On the first page it is one
    `$in`, one range of an index (field, key). On the next ones, beside the key's range, it is
    asked as one query per value, merged by the key (MongoDB's SORT_MERGE plan, written out):
    each an equality and the key's range, one range of that index on any server, where the
    `$in` and the key's range would be two (the local server then scans the collection).

    keep: a test of each document read, for a condition no index of the query can answer
    beside the key's range (a second range, a filter with no index of its own): the query
    walks the index of the rest in key order and the documents failing it are skipped, read
    on until the page is full. It costs what it skips: for conditions few documents fail, or
    where the indexed part is already narrow."""
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
        part = part.order_by(key)
        if keep is None:
            rows.extend(part.limit(size + 1))
        else:
            rows.extend(islice(filter(keep, part.batch_size(size + 1)), size + 1))
    if len(parts) > 1:
        rows.sort(key=lambda row: getattr(row, key))
    more = len(rows) > size
    rows = rows[:size]
    return rows, (getattr(rows[-1], key) if more and rows else None)


def indexed_filter(document, key: str, filters: dict) -> tuple[dict, object]:
    """(the part of `filters` (equalities) an index of `document` serves, a test of each
    document for the rest, or None): the local server uses an index only when the index's
    leading fields are the whole filter, so a list whose filters combine more ways than it
    has indexes asks the largest combination that has one, "<fields>, then the key" (of two
    as large, the one declared first), and checks the rest on the documents read
    (keyset_page's `keep`). Equality as MongoDB means
    it: a list field matches a value it holds."""
    db = {name: document._fields[name].db_field for name in filters}
    key_field = document._fields[key].db_field
    best: tuple = ()
    for spec in document._meta.get("index_specs", []):
        fields = [name for name, _ in spec["fields"]]
        if fields[-1:] != [key_field] or spec.get("partialFilterExpression"):
            continue
        leading = set(fields[:-1])
        if len(leading) > len(best) and leading <= set(db.values()):
            best = tuple(leading)
    served = {name: value for name, value in filters.items() if db[name] in best}
    rest = {name: value for name, value in filters.items() if name not in served}
    if not rest:
        return served, None

    def keep(row) -> bool:
        for name, value in rest.items():
            held = getattr(row, name)
            if not (held == value or (isinstance(held, (list, tuple)) and value in held)):
                return False
        return True

    return served, keep

"""Fetch the remaining pages of a paged API with bounded concurrency.

Paged vendor APIs (Xporter serves pages of a result it has already computed) are latency-bound: one
page at a time spends most of its wall time waiting. Fetching a few pages at once, bounded so the vendor
is not flooded, cuts that wait; each page is handed to ``on_page`` in the caller's thread as soon as it
arrives, so pages can be written to disk and dropped (memory is bounded by ``concurrency`` + 1 pages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def fetch_pages(
    pages: Iterable[int],
    fetch: Callable[[int], T],
    on_page: Callable[[int, T], None],
    *,
    concurrency: int = 4,
) -> int:
    """Fetch ``pages`` with at most ``concurrency`` requests in flight; return how many were fetched.

    The first error stops new requests, waits for those in flight, and is raised.
    """
    todo = iter(pages)
    done_count = 0
    if concurrency <= 1:
        for number in todo:
            on_page(number, fetch(number))
            done_count += 1
        return done_count
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="page") as pool:
        in_flight: dict[Future[T], int] = {}

        def submit_next() -> bool:
            number = next(todo, None)
            if number is None:
                return False
            in_flight[pool.submit(fetch, number)] = number
            return True

        for _ in range(concurrency):
            if not submit_next():
                break
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                number = in_flight.pop(future)
                try:
                    result = future.result()
                except BaseException:
                    for other in in_flight:
                        other.cancel()
                    raise
                submit_next()  # refill the slot before handling the page, so the vendor is never left idle
                on_page(number, result)
                done_count += 1
    return done_count


def fetch_until(
    first: int,
    fetch: Callable[[int], T],
    on_page: Callable[[int, T], None],
    is_last: Callable[[T], bool],
) -> int:
    """Fetch pages ``first``, ``first + 1``, ... one at a time until ``is_last(page)``; return how many.

    For a response that does not say how many pages there are: a next page is only known to exist once
    the current one came back full, so these requests cannot overlap. Each page is handed to ``on_page``
    (which may raise to stop, e.g. on a page that repeats the previous one) before ``is_last`` is asked.
    """
    number = first
    while True:
        page = fetch(number)
        on_page(number, page)
        if is_last(page):
            return number - first + 1
        number += 1

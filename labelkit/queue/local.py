"""``LocalQueue``: an SQS-like queue in the ``queue_messages`` table.

It gives the same guarantees as SQS with a redrive policy, and keeps them across
processes (dashboard, several listeners) and restarts, because all state is in
the database:

* a received message is hidden for ``visibility_timeout`` seconds and comes back
  unless it is deleted (at-least-once delivery);
* every delivery increments ``receive_count`` and issues a new receipt handle, so
  a worker holding the handle of an earlier delivery can no longer delete,
  extend or release the redelivered message;
* a message that has been delivered ``max_receives`` times is moved to the
  dead-letter state (``dead=True``) by the next receive that finds it visible,
  instead of being delivered again (as SQS's redrive does).

Claiming is atomic on both backends:

* SQLite: one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING ...``
  statement. SQLite takes the database write lock when the statement starts,
  so two processes can never claim the same row; WAL plus the engine's busy
  timeout make the other writer wait instead of failing.
* MySQL/MariaDB: ``SELECT ... FOR UPDATE SKIP LOCKED`` then ``UPDATE`` in one
  READ COMMITTED transaction, so concurrent receivers take different rows
  without waiting on each other. Deadlocks are retried.

Every ``SQLAlchemyError`` is translated into ``QueueError``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, case, cast, delete, false, func, insert, literal, select, true, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from labelkit.db.models import QueueMessageRow
from labelkit.errors import QueueError
from labelkit.queue import QueueMessage, QueueStats
from labelkit.retry import lock_conflict

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

logger = logging.getLogger(__name__)

T = QueueMessageRow
MAX_VISIBILITY = 12 * 3600  # SQS's limit, kept for parity
_BURY_BATCH = 100
_MYSQL_RETRYABLE = (1205, 1213)  # lock wait timeout, deadlock


@contextmanager
def _db_errors(action: str) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as e:
        raise QueueError(f"local queue: cannot {action}: {e}") from e


def _mysql_retryable(e: BaseException) -> bool:
    args: tuple[Any, ...] = getattr(getattr(e, "orig", None), "args", ())
    return isinstance(e, OperationalError) and bool(args) and args[0] in _MYSQL_RETRYABLE


class LocalQueue:
    """A ``JobQueue`` stored in the Labelkit database (SQLite or MySQL/MariaDB)."""

    def __init__(
        self,
        engine: Engine,
        name: str = "labelkit-jobs",
        visibility_timeout: int = 120,
        max_receives: int = 4,
        poll_interval: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if visibility_timeout < 0 or visibility_timeout > MAX_VISIBILITY:
            raise ValueError(f"visibility_timeout must be 0..{MAX_VISIBILITY} seconds")
        if max_receives < 1:
            raise ValueError("max_receives must be at least 1")
        self.engine = engine
        self.name = name
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.poll_interval = poll_interval
        self._clock = clock  # wall-clock seconds; tests pass their own to skip waiting
        self._mysql = engine.dialect.name in ("mysql", "mariadb")

    def __repr__(self) -> str:
        return f"LocalQueue({self.name!r}, {self.engine.url.render_as_string(hide_password=True)!r})"

    # --- sending and receiving ----------------------------------------------

    def send(self, body: str) -> str:
        message_id = str(uuid.uuid4())
        with _db_errors("send a message"), self.engine.begin() as conn:
            conn.execute(
                insert(T).values(
                    message_id=message_id,
                    queue=self.name,
                    body=body,
                    receive_count=0,
                    receipt_handle=None,
                    visible_at=self._clock(),
                    dead=False,
                )
            )
        return message_id

    def receive(self, *, max_messages: int = 1, wait_seconds: float = 0) -> list[QueueMessage]:
        """Up to ``max_messages`` messages; polls every ``poll_interval`` s for up to ``wait_seconds``."""
        max_messages = max(1, int(max_messages))
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            messages = self._receive_once(max_messages)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            time.sleep(min(self.poll_interval, remaining))

    def _receive_once(self, n: int) -> list[QueueMessage]:
        if not self._mysql:
            with _db_errors("receive messages"), self.engine.begin() as conn:
                return self._claim_sqlite(conn, n)

        def claim() -> list[QueueMessage]:
            with self.engine.connect() as c:
                conn = c.execution_options(isolation_level="READ COMMITTED")
                with conn.begin():
                    return self._claim_mysql(conn, n)

        retrying = lock_conflict(_mysql_retryable, attempts=5, log=logger)
        try:
            return retrying(claim)
        except SQLAlchemyError as e:
            raise QueueError(f"local queue: cannot receive messages: {e}") from e

    def _handle_expr(self, token: str) -> Any:
        # One new handle per row and delivery: a random per-call token plus the row id.
        return literal(token + ".", String) + cast(T.id, String)

    def _ready(self, now: float) -> list[Any]:
        return [T.queue == self.name, T.dead == false(), T.visible_at <= now]

    def _claim_sqlite(self, conn: Connection, n: int) -> list[QueueMessage]:
        now = self._clock()
        token = uuid.uuid4().hex
        # Dead-letter what has used up its deliveries (the first statement takes
        # the write lock, so the claim below sees a settled table).
        conn.execute(
            update(T)
            .where(*self._ready(now), T.receive_count >= self.max_receives)
            .values(dead=True, receipt_handle=self._handle_expr(token))
        )
        claim = (
            select(T.id)
            .where(*self._ready(now), T.receive_count < self.max_receives)
            .order_by(T.visible_at, T.id)
            .limit(n)
        )
        rows = conn.execute(
            update(T)
            .where(T.id.in_(claim.scalar_subquery()))
            .values(
                receive_count=T.receive_count + 1,
                visible_at=now + self.visibility_timeout,
                receipt_handle=self._handle_expr(token),
            )
            .returning(T.id, T.message_id, T.receipt_handle, T.body, T.receive_count)
        ).all()
        return [self._message(r) for r in sorted(rows, key=lambda r: r.id)]

    def _claim_mysql(self, conn: Connection, n: int) -> list[QueueMessage]:
        now = self._clock()
        token = uuid.uuid4().hex
        dead_ids = (
            conn.execute(
                select(T.id)
                .where(*self._ready(now), T.receive_count >= self.max_receives)
                .limit(_BURY_BATCH)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        if dead_ids:
            conn.execute(
                update(T).where(T.id.in_(dead_ids)).values(dead=True, receipt_handle=self._handle_expr(token))
            )
        # ORDER BY visible_at follows the (queue, dead, visible_at) index, so
        # InnoDB locks only the rows it returns rather than every ready row.
        ids = (
            conn.execute(
                select(T.id)
                .where(*self._ready(now), T.receive_count < self.max_receives)
                .order_by(T.visible_at)
                .limit(n)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        if not ids:
            return []
        conn.execute(
            update(T)
            .where(T.id.in_(ids))
            .values(
                receive_count=T.receive_count + 1,
                visible_at=now + self.visibility_timeout,
                receipt_handle=self._handle_expr(token),
            )
        )
        rows = conn.execute(
            select(T.id, T.message_id, T.receipt_handle, T.body, T.receive_count)
            .where(T.id.in_(ids))
            .order_by(T.id)
        ).all()
        return [self._message(r) for r in rows]

    @staticmethod
    def _message(row: Any) -> QueueMessage:
        return QueueMessage(
            message_id=row.message_id,
            receipt_handle=row.receipt_handle,
            body=row.body,
            receive_count=row.receive_count,
        )

    # --- acknowledging --------------------------------------------------------

    def _live(self, receipt_handle: str) -> list[Any]:
        return [T.queue == self.name, T.receipt_handle == receipt_handle, T.dead == false()]

    def delete(self, receipt_handle: str) -> None:
        """Acknowledge a message. Stale handles (the message was redelivered) are ignored."""
        with _db_errors("delete a message"), self.engine.begin() as conn:
            result = conn.execute(delete(T).where(*self._live(receipt_handle)))
        if result.rowcount == 0:
            logger.info("local queue: delete with a stale or unknown receipt handle ignored")

    def extend(self, receipt_handle: str, seconds: int) -> None:
        """Hide the message ``seconds`` more from now.

        Raises ``QueueError`` if the handle is no longer current (the message was
        deleted, dead-lettered or delivered again): the caller has lost it.
        """
        if seconds < 0 or seconds > MAX_VISIBILITY:
            raise QueueError(f"visibility extension must be 0..{MAX_VISIBILITY} seconds")
        with _db_errors("extend a message"), self.engine.begin() as conn:
            result = conn.execute(
                update(T).where(*self._live(receipt_handle)).values(visible_at=self._clock() + seconds)
            )
        if result.rowcount == 0:
            raise QueueError("local queue: receipt handle is no longer current; cannot extend")

    def release(self, receipt_handle: str) -> None:
        """Make the message visible now; stale handles are ignored. The receive count stays."""
        with _db_errors("release a message"), self.engine.begin() as conn:
            conn.execute(update(T).where(*self._live(receipt_handle)).values(visible_at=self._clock()))

    # --- inspection and dead letters -----------------------------------------

    def stats(self) -> QueueStats:
        now = self._clock()
        live = T.dead == false()
        stmt = select(
            func.coalesce(func.sum(case((live & (T.visible_at <= now), 1), else_=0)), 0),
            func.coalesce(func.sum(case((live & (T.visible_at > now), 1), else_=0)), 0),
            func.coalesce(func.sum(case((T.dead == true(), 1), else_=0)), 0),
        ).where(T.queue == self.name)
        with _db_errors("read queue statistics"), self.engine.connect() as conn:
            visible, in_flight, dead = conn.execute(stmt).one()
        return QueueStats(visible=int(visible), in_flight=int(in_flight), dead=int(dead))

    def dead_letters(self, *, limit: int = 100) -> Sequence[QueueMessage]:
        """Dead letters, oldest first. Unlike SQS, listing them does not hide them."""
        stmt = (
            select(T.id, T.message_id, T.receipt_handle, T.body, T.receive_count)
            .where(T.queue == self.name, T.dead == true())
            .order_by(T.id)
            .limit(max(0, limit))
        )
        with _db_errors("list dead letters"), self.engine.connect() as conn:
            return [self._message(r) for r in conn.execute(stmt).all()]

    def redrive(self, receipt_handle: str) -> None:
        """Make one dead letter live again: visible now, receive count 0.

        An unknown handle (already redriven or purged) is ignored.
        """
        with _db_errors("redrive a dead letter"), self.engine.begin() as conn:
            result = conn.execute(
                update(T)
                .where(T.queue == self.name, T.receipt_handle == receipt_handle, T.dead == true())
                .values(dead=False, receive_count=0, visible_at=self._clock(), receipt_handle=None)
            )
        if result.rowcount == 0:
            logger.info("local queue: redrive of an unknown dead letter ignored")

    def purge_matching(self, needle: str) -> int:
        """Delete every message, live, in flight or dead, whose raw body contains ``needle``.

        Bodies are S3 events with URL-encoded keys, so pass something that
        encodes to itself (an image id), not a key with spaces.
        """
        if not needle:
            raise QueueError("purge_matching needs a non-empty needle")
        with _db_errors("purge messages"), self.engine.begin() as conn:
            candidates = conn.execute(
                select(T.id, T.body).where(T.queue == self.name, T.body.contains(needle, autoescape=True))
            ).all()
            # LIKE is case-insensitive on MySQL's default collation: check exactly here.
            ids = [r.id for r in candidates if needle in r.body]
            if not ids:
                return 0
            conn.execute(delete(T).where(T.id.in_(ids)))
        return len(ids)

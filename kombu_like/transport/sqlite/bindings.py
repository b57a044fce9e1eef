"""Exchanges and bindings kept in the database file, so every process routes alike."""

from __future__ import annotations

import json
import sqlite3

from ...exceptions import InconsistencyError
from ..virtual.routing import Binding, ExchangeInfo
from .database import Database, dumps

__all__ = ["SqliteBindings"]


class SqliteBindings:
    """Exchanges and bindings kept in the database file, so every process sees them.

    A version counter in the file changes with every declaration, binding and deletion;
    the snapshot kept here is re-read only when that counter moved.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._seen: int | None = None
        self._exchanges: dict[str, ExchangeInfo] = {}
        self._bindings: dict[str, list[Binding]] = {}

    @property
    def version(self) -> int:
        database = self._database
        with database.lock:
            row = database.conn().execute("SELECT value FROM kl_meta WHERE key = 'bindings'").fetchone()
        if row is None:
            raise InconsistencyError(f"sqlite database {database.path!r} lost its kombu_like tables")
        return int(row[0])

    def _fresh(self) -> None:
        version = self.version
        if version != self._seen:
            self._exchanges, self._bindings = self._load()
            self._seen = version

    def _load(self) -> tuple[dict[str, ExchangeInfo], dict[str, list[Binding]]]:
        with self._database.lock:
            db = self._database.conn()
            exchange_rows = db.execute(
                "SELECT name, type, durable, auto_delete, arguments FROM kl_exchanges"
            ).fetchall()
            binding_rows = db.execute(
                "SELECT exchange, queue, routing_key, arguments FROM kl_bindings ORDER BY rowid"
            ).fetchall()
        exchanges = {
            name: ExchangeInfo(name, type_, bool(durable), bool(auto_delete), json.loads(arguments) or None)
            for name, type_, durable, auto_delete, arguments in exchange_rows
        }
        bindings: dict[str, list[Binding]] = {}
        for exchange, queue, routing_key, arguments in binding_rows:
            bindings.setdefault(exchange, []).append(Binding(queue, routing_key, json.loads(arguments) or None))
        return exchanges, bindings

    @staticmethod
    def _bump(cur: sqlite3.Connection) -> None:
        cur.execute("UPDATE kl_meta SET value = value + 1 WHERE key = 'bindings'")

    def declare_exchange(self, info: ExchangeInfo) -> None:
        with self._database.transaction() as cur:
            changed = cur.execute(
                "INSERT OR IGNORE INTO kl_exchanges VALUES (?, ?, ?, ?, ?)",
                (info.name, info.type, int(info.durable), int(info.auto_delete), dumps(dict(info.arguments or {}))),
            ).rowcount
            if changed:
                self._bump(cur)

    def exchange(self, name: str) -> ExchangeInfo | None:
        self._fresh()
        return self._exchanges.get(name)

    def delete_exchange(self, name: str) -> None:
        with self._database.transaction() as cur:
            cur.execute("DELETE FROM kl_exchanges WHERE name = ?", (name,))
            cur.execute("DELETE FROM kl_bindings WHERE exchange = ?", (name,))
            self._bump(cur)

    def bind(self, exchange: str, binding: Binding) -> None:
        with self._database.transaction() as cur:
            changed = cur.execute(
                "INSERT OR IGNORE INTO kl_bindings VALUES (?, ?, ?, ?)",
                (exchange, binding.queue, binding.routing_key, dumps(dict(binding.arguments or {}))),
            ).rowcount
            if changed:
                self._bump(cur)

    def unbind(self, exchange: str, binding: Binding) -> None:
        with self._database.transaction() as cur:
            changed = cur.execute(
                "DELETE FROM kl_bindings WHERE exchange = ? AND queue = ? AND routing_key = ? AND arguments = ?",
                (exchange, binding.queue, binding.routing_key, dumps(dict(binding.arguments or {}))),
            ).rowcount
            if changed:
                self._bump(cur)

    def unbind_queue(self, queue: str) -> None:
        with self._database.transaction() as cur:
            if cur.execute("DELETE FROM kl_bindings WHERE queue = ?", (queue,)).rowcount:
                self._bump(cur)

    def get_bindings(self, exchange: str) -> list[Binding]:
        self._fresh()
        return list(self._bindings.get(exchange, ()))

    def all_bindings(self) -> list[tuple[str, Binding]]:
        self._fresh()
        return [(ex, b) for ex, items in self._bindings.items() for b in items]

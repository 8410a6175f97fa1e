"""Who may manage jobs: API tokens and dashboard users, for both faces of ``app.admin``.

Kept apart from the job methods so that neither module grows past what one reads at a
sitting. Each mixin needs only its class's ``_run``. Password hashing is CPU-heavy (tens
of milliseconds), so the async face does it in a thread and never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from offload.ops import Op
from offload.tokens import (
    NewToken,
    Role,
    TokenInfo,
    authenticate,
    create_token,
    list_tokens,
    revoke_token,
)
from offload.tokens import public as public_tokens
from offload.users import (
    UserInfo,
    add_user,
    check_hash,
    check_user,
    create_user,
    disable_user,
    enable_user,
    end_sessions,
    get_user,
    hash_password,
    keep_rehash,
    list_users,
    public,
    replace_hash,
    set_password,
    verify_password,
)

T = TypeVar("T")


def _bare(info: UserInfo) -> UserInfo:
    return public([info])[0]


class SyncAccounts:
    """Tokens and users for ``app.admin``."""

    def _run(self, op: Op[T]) -> T:
        raise NotImplementedError

    def create_token(self, *, owner: str, role: Role | str, name: str = "") -> NewToken:
        """A new API token for ``owner``; ``.token`` is its only copy (the store keeps a hash)."""
        return self._run(create_token(owner, role, name))

    def tokens(self) -> list[TokenInfo]:
        """Every token, revoked ones included, without their hashes."""
        return public_tokens(self._run(list_tokens()))

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Stop a token working, on every server at once (``LookupError`` if unknown)."""
        return self._run(revoke_token(token_id))

    def authenticate(self, token: str) -> TokenInfo | None:
        """The token's owner and role if it is valid and not revoked, else None."""
        return self._run(authenticate(token))

    def create_user(self, *, name: str, owner: str, role: Role | str, password: str) -> UserInfo:
        """A dashboard user who sees ``owner``'s jobs as ``role`` (``InvalidQuery`` if the
        name is taken, ``ConfigurationError`` for a bad name or a password under 10)."""
        return _bare(self._run(create_user(name, owner, role, password)))

    def users(self) -> list[UserInfo]:
        """Every user, disabled ones included, without their hashes."""
        return public(self._run(list_users()))

    def user(self, name: str) -> UserInfo | None:
        found = self._run(get_user(name))
        return None if found is None else _bare(found)

    def set_password(self, name: str, password: str) -> UserInfo:
        """A new password (``LookupError`` if unknown); the user's sessions end."""
        return _bare(self._run(set_password(name, password)))

    def disable_user(self, name: str) -> UserInfo:
        """No more logins, and sessions end, on every server at once (``LookupError`` if
        unknown)."""
        return _bare(self._run(disable_user(name)))

    def enable_user(self, name: str) -> UserInfo:
        """Let a disabled user log in again (``LookupError`` if unknown)."""
        return _bare(self._run(enable_user(name)))

    def end_sessions(self, name: str) -> UserInfo:
        """End every open session of the user, on every server (``LookupError`` if unknown)."""
        return _bare(self._run(end_sessions(name)))

    def verify_password(self, name: str, password: str) -> UserInfo | None:
        """The active user if this is their password, else None (unknown, disabled, wrong)."""
        found = self._run(verify_password(name, password))
        return None if found is None else _bare(found)


class AsyncAccounts:
    """Tokens and users for ``app.admin.aio``."""

    async def _run(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def create_token(self, *, owner: str, role: Role | str, name: str = "") -> NewToken:
        return await self._run(create_token(owner, role, name))

    async def tokens(self) -> list[TokenInfo]:
        return public_tokens(await self._run(list_tokens()))

    async def revoke_token(self, token_id: str) -> TokenInfo:
        return await self._run(revoke_token(token_id))

    async def authenticate(self, token: str) -> TokenInfo | None:
        return await self._run(authenticate(token))

    async def create_user(
        self, *, name: str, owner: str, role: Role | str, password: str
    ) -> UserInfo:
        check_user(name, owner, role)  # cheap mistakes before the slow hash
        hashed = await asyncio.to_thread(hash_password, password)
        return _bare(await self._run(add_user(name, owner, role, hashed)))

    async def users(self) -> list[UserInfo]:
        return public(await self._run(list_users()))

    async def user(self, name: str) -> UserInfo | None:
        found = await self._run(get_user(name))
        return None if found is None else _bare(found)

    async def set_password(self, name: str, password: str) -> UserInfo:
        hashed = await asyncio.to_thread(hash_password, password)
        return _bare(await self._run(replace_hash(name, hashed)))

    async def disable_user(self, name: str) -> UserInfo:
        return _bare(await self._run(disable_user(name)))

    async def enable_user(self, name: str) -> UserInfo:
        return _bare(await self._run(enable_user(name)))

    async def end_sessions(self, name: str) -> UserInfo:
        return _bare(await self._run(end_sessions(name)))

    async def verify_password(self, name: str, password: str) -> UserInfo | None:
        found = await self._run(get_user(name))
        ok, rehashed = await asyncio.to_thread(check_hash, found, password)
        if not ok or found is None:
            return None
        kept = await self._run(keep_rehash(found, rehashed))
        return None if kept is None else _bare(kept)

"""What route handlers declare they need (FastAPI dependencies, as ``Annotated`` types)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from p13n.server.auth import TenantScope, require_tenant
from p13n.store import MAX_OFFSET

TenantDep = Annotated[TenantScope, Depends(require_tenant)]
"""The caller's tenant (a live tenant key within its rate limit), with its scoped store."""
Limit = Annotated[int, Query(ge=1, le=1000)]
"""How many rows a listing returns at most."""
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
"""How many rows a listing skips."""

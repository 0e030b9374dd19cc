from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import Query, Response, status

from app.api.auth import CurrentUser
from app.api.deps import SessionDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.api.v1.schemas.characters import CharacterCreate, CharacterOut, CharacterUpdate
from app.api.v1.schemas.common import INT_ID_MAX
from app.models import ConsistentCharacter
from app.modules.characters.manager import CharacterManager

router = api_router(prefix="/characters", tags=["characters"])
Characters = CharacterManager


@router.post("", response_model=CharacterOut, status_code=status.HTTP_201_CREATED,
             responses=errors(404))
async def create_character(body: CharacterCreate, user: CurrentUser, session: SessionDep,
                           characters: Characters = manager(Characters)) -> ConsistentCharacter:
    return await characters.create(session, user, body)


@router.get("", response_model=list[CharacterOut])
async def list_characters(
    user: CurrentUser, session: SessionDep,
    project_id: Annotated[int | None, Query(ge=1, le=INT_ID_MAX)] = None,
    characters: Characters = manager(Characters),
) -> Sequence[ConsistentCharacter]:
    return await characters.list_for(session, user, project_id)


@router.get("/{character_id}", response_model=CharacterOut, responses=errors(404))
async def get_character(character_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                        characters: Characters = manager(Characters)) -> ConsistentCharacter:
    return await characters.get(session, user, character_id)


@router.put("/{character_id}", response_model=CharacterOut, responses=errors(404))
@router.patch("/{character_id}", response_model=CharacterOut, responses=errors(404))
async def update_character(
    character_id: uuid.UUID, body: CharacterUpdate, user: CurrentUser, session: SessionDep,
    characters: Characters = manager(Characters),
) -> ConsistentCharacter:
    return await characters.update(session, user, character_id, body)


@router.delete("/{character_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors(404))
async def delete_character(character_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                           characters: Characters = manager(Characters)) -> Response:
    await characters.delete(session, user, character_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Path, Response, status

from app.api.auth import CurrentUser, PrincipalDep
from app.api.deps import SessionDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.api.v1.schemas.common import INT_ID_MAX
from app.api.v1.schemas.projects import ProjectCreate, ProjectOut, ProjectSelect
from app.models import Project
from app.modules.projects.manager import ProjectManager

router = api_router(prefix="/projects", tags=["projects"])
Projects = ProjectManager
ProjectId = Annotated[int, Path(ge=1, le=INT_ID_MAX)]
# `{project_id:int}` in the paths: only digits reach those routes, so GET /projects/select is a
# 405 (POST is the one method /projects/select has), not a 422 about an integer.


@router.post("", response_model=ProjectOut, status_code=status.HTTP_201_CREATED)
async def create_project(body: ProjectCreate, user: CurrentUser, session: SessionDep,
                         projects: Projects = manager(Projects)) -> Project:
    return await projects.create(session, user, body)


@router.get("", response_model=list[ProjectOut])
async def list_projects(user: CurrentUser, session: SessionDep,
                        projects: Projects = manager(Projects)) -> Sequence[Project]:
    return await projects.list_for(session, user.id)


@router.post("/select", response_model=list[ProjectOut], responses=errors(404))
async def select_projects(body: ProjectSelect, principal: PrincipalDep, session: SessionDep,
                          projects: Projects = manager(Projects)) -> Sequence[Project]:
    """Projects of a user_id: your own, or anyone's for an admin (kept for seed clients)."""
    viewer = principal.user.id if principal.user else None
    return await projects.select_for(session, body.user_id, viewer_id=viewer,
                                     is_admin=principal.is_admin)


@router.get("/{project_id:int}", response_model=ProjectOut, responses=errors(404))
async def get_project(project_id: ProjectId, user: CurrentUser, session: SessionDep,
                      projects: Projects = manager(Projects)) -> Project:
    return await projects.get(session, user, project_id)


@router.delete("/{project_id:int}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors(404))
async def delete_project(project_id: ProjectId, user: CurrentUser, session: SessionDep,
                         projects: Projects = manager(Projects)) -> Response:
    await projects.delete(session, user, project_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""The component catalog, generated from the executor declarations (never edited by hand)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db.base import Base, JSONType, TimestampMixin


class AgenticComponent(TimestampMixin, Base):
    __tablename__ = "agentic_components"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")

    fields: Mapped[list[ComponentField]] = relationship(
        cascade="all, delete-orphan", order_by="ComponentField.position", lazy="selectin"
    )
    ports: Mapped[list[ComponentPort]] = relationship(
        cascade="all, delete-orphan", order_by="ComponentPort.position", lazy="selectin"
    )
    api_config: Mapped[ComponentApiConfig | None] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    output_schema: Mapped[ComponentOutputSchema | None] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


def _component_fk() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("agentic_components.id", ondelete="CASCADE"), index=True)


class ComponentField(Base):
    __tablename__ = "component_fields"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    component_id: Mapped[uuid.UUID] = _component_fk()
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    default: Mapped[Any] = mapped_column(JSONType, nullable=True)
    required: Mapped[bool] = mapped_column(default=False)
    options: Mapped[list[Any] | None] = mapped_column(JSONType, default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(default=0)


class ComponentPort(Base):
    __tablename__ = "component_ports"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    component_id: Mapped[uuid.UUID] = _component_fk()
    name: Mapped[str] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(8))  # input | output
    kind: Mapped[str] = mapped_column(String(16))  # text | adapter
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(default=0)


class ComponentApiConfig(Base):
    __tablename__ = "component_api_config"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    component_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agentic_components.id", ondelete="CASCADE"), unique=True
    )
    makes_api_call: Mapped[bool] = mapped_column(default=False)
    api_call: Mapped[str] = mapped_column(String(16), default="never")
    default_temperature: Mapped[float | None] = mapped_column(default=None)
    provider_hints: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ComponentOutputSchema(Base):
    __tablename__ = "component_output_schema"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    component_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agentic_components.id", ondelete="CASCADE"), unique=True
    )
    json_schema: Mapped[dict[str, Any]] = mapped_column(default=dict)

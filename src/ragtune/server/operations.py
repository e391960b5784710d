"""Pipelines and the model registry over HTTP.

``POST /v1/pipelines/{name}/run`` runs a built-in pipeline or one saved as ``<project>/pipelines/<name>.yaml``
(only those: the name is never read as a path) as the caller, audited with route ``api:run``.
``GET /v1/registry/models[/{name}]`` shows the registered classifiers' cards to admins, without file paths
(``/v1/models`` is the OpenAI-compatible model listing).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ragtune.errors import ModelNotFoundError
from ragtune.project import Project
from ragtune.server.deps import ApiError, Service, audited
from ragtune.server.schemas import MAX_QUESTION_CHARS
from ragtune.service.identity import Identity

if TYPE_CHECKING:
    from ragtune.tuning.registry import ModelCard  # imports sklearn: not at server start

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RunRequest(BaseModel):
    """``POST /v1/pipelines/{name}/run``: the input (a question or a customer message)."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)


class ModelOut(BaseModel):
    """A registered classifier version's card (its training file by name only, never a server path)."""

    name: str
    version: int
    versions: list[int]
    promoted: int | None
    method: str
    classes: list[str]
    data_sha256: str
    data_file: str
    created: float
    metrics: dict[str, Any]
    params: dict[str, Any]


class ModelsOut(BaseModel):
    """Every registered classifier, at the version its name resolves to."""

    models: list[ModelOut]


def pipeline_file(project: Project, name: str) -> Path | str:
    """The project's ``pipelines/<name>.yaml``, else the built-in's name; 404 for anything else."""
    from ragtune.pipelines.spec import builtin_names

    if _NAME.match(name) and not name.endswith((".yaml", ".yml")):
        own = project.settings.project_dir / "pipelines" / f"{name}.yaml"
        if own.is_file():
            return own
        if name in builtin_names():
            return name
    raise ApiError(404, "pipeline_not_found", f"no pipeline {name!r}: use a built-in "
                                              f"({', '.join(builtin_names())}) or save one as "
                                              f"pipelines/{name}.yaml in the project")


def model_out(project: Project, card: "ModelCard") -> ModelOut:
    """The card as the API shows it."""
    try:
        promoted = project.registry.promoted(card.name)
    except Exception:  # noqa: BLE001 - a broken alias file shows as no promotion, the card is still shown
        promoted = None
    return ModelOut(name=card.name, version=card.version, versions=project.registry.versions(card.name),
                    promoted=promoted, method=card.method, classes=list(card.classes),
                    data_sha256=card.data_sha256, data_file=Path(str(card.data_source)).name,
                    created=card.created, metrics=dict(card.metrics), params=dict(card.params))


def router(service: Service) -> APIRouter:
    """The pipeline run route and the registry routes."""
    project = service.project
    r = APIRouter()

    @r.post("/v1/pipelines/{name}/run", tags=["pipelines"])
    def run(name: str, body: RunRequest, identity: Annotated[Identity, Depends(service.caller("run"))]
            ) -> dict[str, Any]:
        """Run a pipeline on ``text`` as the caller: answer with citations, labels, route, groundedness.

        The result is the same JSON as ``ragtune run --json``.
        """
        from ragtune.pipelines.runner import PipelineRunner
        from ragtune.pipelines.spec import load_pipeline

        service.require_ready()
        spec = load_pipeline(pipeline_file(project, name))
        with audited(project, "api:run", identity, body.text) as trail:
            runner = PipelineRunner(spec, project)
            runner.warm_up()  # model loading is start-up, not step latency
            result = runner.run(body.text, identity.principal)
            trail.ran(result)
        return result.to_dict()

    @r.get("/v1/registry/models", response_model=ModelsOut, tags=["models"])
    def models(identity: Annotated[Identity, Depends(service.caller("models"))]) -> ModelsOut:
        """Every registered classifier's card (admins only)."""
        return ModelsOut(models=[model_out(project, c) for c in project.registry.list()])

    @r.get("/v1/registry/models/{name}", response_model=ModelOut, tags=["models"])
    def model(name: str, identity: Annotated[Identity, Depends(service.caller("models"))],
              version: int | None = None) -> ModelOut:
        """One classifier's card: ``version``, else its promoted version, else its latest (admins only)."""
        if not _NAME.match(name) or not project.registry.versions(name):
            raise ModelNotFoundError(f"no model named {name!r}; GET /v1/registry/models lists them")
        return model_out(project, project.registry.card(name, version))

    return r

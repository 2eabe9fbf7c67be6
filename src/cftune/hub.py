"""`cftune push`: a trained model folder to the Hugging Face hub, by huggingface_hub's own upload."""

from __future__ import annotations

import logging
from pathlib import Path

from cftune.errors import ConfigError

log = logging.getLogger(__name__)
# what a run folder holds beside the model: resumable training state stays home
NOT_PUSHED = ["checkpoints/**", ".*", "**/.*"]


def push(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         endpoint: str | None = None) -> str:
    """Create ``repo_id`` (if needed) and upload the model folder (a run or an export) in one commit.

    Returns the commit's URL. ``endpoint`` (default: $HF_ENDPOINT, else the hub) lets tests use a stand-in.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / "modules.json").is_file():
        raise ConfigError(f"{folder} is not a saved model (no modules.json): push a `cftune train` run or export")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"must be owner/name, got {repo_id!r}", "repo")
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=NOT_PUSHED,
                               commit_message=f"cftune push of {folder.name}")
    log.info("pushed %s to %s", folder, commit.commit_url)
    return commit.commit_url

import platform

from sdtp import provenance


def test_outside_slurm_the_job_id_is_null_and_unset_devices_are_null(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert provenance.provenance() == {"host": platform.node(), "slurm_job_id": None, "cuda_visible_devices": None}


def test_inside_a_slurm_job_the_row_names_the_job_and_its_devices(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    row = provenance.provenance()
    assert row["slurm_job_id"] == "4711" and row["cuda_visible_devices"] == "2"
    assert tuple(row) == provenance.COLUMNS


def test_an_empty_job_id_is_no_job_but_an_empty_device_list_is_kept(monkeypatch):
    # CUDA_VISIBLE_DEVICES="" hides every GPU: that is information, not absence.
    monkeypatch.setenv("SLURM_JOB_ID", "")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert provenance.slurm_job_id() is None
    assert provenance.cuda_visible_devices() == ""


def test_library_versions_name_each_installed_library_and_none_for_a_missing_one(monkeypatch):
    import importlib.metadata

    import torch
    import transformers

    versions = provenance.library_versions()
    assert versions["torch_version"] == torch.__version__
    assert versions["transformers_version"] == transformers.__version__
    assert set(versions) == {"torch_version", "transformers_version", "accelerate_version"}

    def only_torch(name):
        if name != "torch":
            raise importlib.metadata.PackageNotFoundError(name)
        return "2.99.0"

    monkeypatch.setattr(importlib.metadata, "version", only_torch)
    assert provenance.library_versions() == {
        "torch_version": "2.99.0",
        "transformers_version": None,
        "accelerate_version": None,
    }

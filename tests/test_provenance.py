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

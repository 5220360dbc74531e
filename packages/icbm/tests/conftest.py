import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic():
    """A small trained independent CBM on the occluded-concepts task (~2 s)."""
    import icbm
    from icbm.data import OccludedConceptsTask

    task = OccludedConceptsTask(seed=0)
    tr, va, te = task.splits(1500, 400, 300, seed=0)
    torch.manual_seed(0)  # the weights must not depend on which tests ran before (issue 18)
    model = icbm.linear_cbm(task.in_features, task.groups, task.n_classes)
    icbm.fit(model, tr, epochs=25, lr=1e-2)
    return task, model, tr, va, te


@pytest.fixture(scope="session")
def categorical():
    """A small trained CBM on the one-hot-group task (8 groups x 4 values)."""
    import icbm
    from icbm.data import categorical_task

    task = categorical_task(seed=0)
    tr, va, te = task.splits(1500, 400, 300, seed=0)
    torch.manual_seed(0)  # the weights must not depend on which tests ran before (issue 18)
    model = icbm.linear_cbm(task.in_features, task.groups, task.n_classes)
    icbm.fit(model, tr, epochs=25, lr=1e-2)
    return task, model, tr, va, te

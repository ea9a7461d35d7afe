"""The course's part 2 end to end on cnnlab: its ``CatsAndDogsDataset`` (a ``Dataset``
subclass reading a Kaggle-layout folder with Pillow), transforms, ``DataLoader``s, the
``CNNClassifier``, the training loop and the evaluation, written for torch and torchvision
(COURSE_DATA below plus test_course.COURSE) and run with only the import lines changed,
on a Kaggle-layout folder written from the bundled silhouettes. It must reach 90% test
accuracy. README.md shows this code (a test checks it is the same, byte for byte). (The
course's network and loop alone are checked against torch's numbers in test_course.py.)
"""
from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from test_course import COURSE

README = Path(__file__).resolve().parents[1] / "README.md"

TORCH_IMPORTS = """\
import os

import torch
import torch.nn as nn
import torch.optim as optim
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
"""

CNNLAB_IMPORTS = """\
import os

import cnnlab as torch
import cnnlab.nn as nn
import cnnlab.optim as optim
from PIL import Image
from cnnlab.utils.data import DataLoader, Dataset
from cnnlab.vision import transforms
"""

COURSE_DATA = '''
DATA_DIR = "cats_and_dogs"      # a Kaggle download: train/<class>/*.jpg, test/<class>/*.jpg
IMG_SIZE = 28
BATCH_SIZE = 32
NUM_EPOCHS = 5
history = []                    # the loss of every step (train_model appends to it)
torch.manual_seed(0)


class CatsAndDogsDataset(Dataset):
    def __init__(self, root_dir, transform=None):
        self.root_dir = root_dir
        self.transform = transform
        self.classes = sorted(os.listdir(root_dir))
        self.image_paths = []
        self.labels = []
        for label, class_name in enumerate(self.classes):
            class_dir = os.path.join(root_dir, class_name)
            for img_name in sorted(os.listdir(class_dir)):
                self.image_paths.append(os.path.join(class_dir, img_name))
                self.labels.append(label)

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, idx):
        image = Image.open(self.image_paths[idx]).convert("RGB")
        label = self.labels[idx]
        if self.transform:
            image = self.transform(image)
        return image, label


transform = transforms.Compose([
    transforms.Resize((IMG_SIZE, IMG_SIZE)),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
])

train_dataset = CatsAndDogsDataset(os.path.join(DATA_DIR, "train"), transform=transform)
test_dataset = CatsAndDogsDataset(os.path.join(DATA_DIR, "test"), transform=transform)
train_loader = DataLoader(train_dataset, batch_size=BATCH_SIZE, shuffle=True)
test_loader = DataLoader(test_dataset, batch_size=BATCH_SIZE, shuffle=False)
'''

COURSE_RUN = '''

model = CNNClassifier().to(device)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.001)
train_model(model, train_loader, criterion, optimizer, NUM_EPOCHS)
correct, total = evaluate_model(model, test_loader)
'''


def course_source() -> str:
    """The whole part 2 as the course writes it, for torch."""
    return TORCH_IMPORTS + COURSE_DATA + COURSE + COURSE_RUN


def on_cnnlab(source: str) -> str:
    """``source`` with its import lines, and nothing else, changed to cnnlab's."""
    assert source.startswith(TORCH_IMPORTS)
    return CNNLAB_IMPORTS + source[len(TORCH_IMPORTS):]


def test_only_the_imports_change():
    torch_code, cnnlab_code = course_source(), on_cnnlab(course_source())
    assert "cnnlab" not in torch_code
    changed = [(a, b) for a, b in zip(torch_code.splitlines(), cnnlab_code.splitlines())
               if a != b]
    assert len(changed) == 5 and all(re.match(r"(import|from) ", a) for a, _ in changed)


@pytest.fixture(scope="module")
def kaggle_folder(tmp_path_factory):
    from cnnlab.vision import datasets
    return datasets.export_catsdogs(tmp_path_factory.mktemp("kaggle") / "cats_and_dogs")


def _readme_block(marker: str) -> str:
    """The body of the ```python block that follows the line ``<!-- marker -->`` in
    README.md."""
    text = README.read_text(encoding="utf-8")
    head = f"<!-- {marker} -->\n```python\n"
    start = text.index(head) + len(head)
    return text[start:text.index("\n```\n", start) + 1]


def test_readme_shows_this_code():
    """README.md's section on the course's code shows exactly what this file runs: the
    code on cnnlab, and a table of the import lines that changed, torch's beside cnnlab's."""
    assert _readme_block("course part 2 on cnnlab") == on_cnnlab(course_source())
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The course's PyTorch code on cnnlab"):]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|$", section[:section.index("```")], re.M)
    changed = [(a, b) for a, b in zip(TORCH_IMPORTS.splitlines(), CNNLAB_IMPORTS.splitlines())
               if a != b]
    assert rows == changed


@pytest.mark.slow   # a real training run: once in CI, on the source install
def test_course_part_two_trains_on_cnnlab(kaggle_folder, monkeypatch):
    monkeypatch.chdir(os.path.dirname(kaggle_folder))      # DATA_DIR = "cats_and_dogs"
    namespace = {"__name__": "course"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(on_cnnlab(course_source()), "<course part 2>", "exec"), namespace)
    text = out.getvalue()
    assert namespace["train_dataset"].classes == ["cat", "dog"]
    assert len(namespace["train_dataset"]) == 1592 and namespace["total"] == 397
    assert text.count("Epoch [") == 5, text
    accuracy = namespace["correct"] / namespace["total"]
    print(text)
    assert accuracy >= 0.90, text

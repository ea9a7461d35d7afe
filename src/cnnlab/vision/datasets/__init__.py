"""``cnnlab.vision.datasets``: ImageFolder (torchvision's) and the bundled silhouettes."""
from .catsdogs import CatsDogs, export_catsdogs, save_image_folder
from .folder import (IMG_EXTENSIONS, DatasetFolder, ImageFolder, default_loader,
                     find_classes, has_file_allowed_extension, make_dataset, pil_loader)
from .vision import VisionDataset

__all__ = ["VisionDataset", "ImageFolder", "DatasetFolder", "CatsDogs", "export_catsdogs", "save_image_folder",
           "IMG_EXTENSIONS", "default_loader", "pil_loader", "find_classes", "make_dataset",
           "has_file_allowed_extension"]

"""Class lists and label mappings of the benchmark data sets.

Used by :mod:`dcrepro.data.loaders` to name classes and to build the CIFAR-100-20 labels, and by
the error messages of :mod:`dcrepro.data.registry` (which ImageNet classes a user must provide).
Only facts about the data sets live here: no paths, no I/O.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "MNIST_CLASSES", "FASHION_MNIST_CLASSES", "CIFAR10_CLASSES", "STL10_CLASSES",
    "CIFAR100_FINE_CLASSES", "CIFAR100_SUPERCLASSES", "cifar100_to_20",
    "IMAGENET10_WNIDS", "IMAGENET_DOGS_WNIDS", "AGNEWS_CLASSES", "DBPEDIA_CLASSES",
    "STACKOVERFLOW_CLASSES",
]

MNIST_CLASSES = [str(d) for d in range(10)]

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

# STL-10 class_names.txt order (labels 1..10 in the binaries).
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]

# The 20 CIFAR-100 super-classes with their five fine classes, as tabulated on the CIFAR page
# (https://www.cs.toronto.edu/~kriz/cifar.html). Super-class ids = alphabetical order of the keys,
# which is also the order of `coarse_label_names` in the `meta` pickle.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}

# Fine label ids of CIFAR-100 are the alphabetical order of the 100 fine names (`fine_label_names`).
CIFAR100_FINE_CLASSES: list[str] = sorted(n for fines in CIFAR100_SUPERCLASSES.values() for n in fines)


def cifar100_to_20() -> np.ndarray:
    """The standard CIFAR-100 → 20 super-class mapping.

    Returns
    -------
    numpy.ndarray
        int64 array of length 100; entry ``f`` is the super-class id (0..19) of fine label ``f``.
        Built from :data:`CIFAR100_SUPERCLASSES` by name, so the table above is the single source.
    """
    coarse_of = {fine: c for c, sup in enumerate(sorted(CIFAR100_SUPERCLASSES))
                 for fine in CIFAR100_SUPERCLASSES[sup]}
    return np.array([coarse_of[f] for f in CIFAR100_FINE_CLASSES], dtype=np.int64)


# ImageNet-10 and ImageNet-Dogs: the ILSVRC-2012 synsets of DAC (Chang et al. 2017) as listed by
# Contrastive Clustering (Yunfan-Li/Contrastive-Clustering datasets/ImageNet-10.txt, ImageNet-dogs.txt),
# which SPICE and RPSC reuse.
IMAGENET10_WNIDS = {
    "n02056570": "king penguin", "n02085936": "Maltese dog", "n02128757": "snow leopard",
    "n02690373": "airliner", "n02692877": "airship", "n03095699": "container ship",
    "n04254680": "soccer ball", "n04285008": "sports car", "n04467665": "trailer truck",
    "n07747607": "orange",
}
IMAGENET_DOGS_WNIDS = {
    "n02085936": "Maltese dog", "n02086646": "Blenheim spaniel", "n02088238": "basset",
    "n02091467": "Norwegian elkhound", "n02097130": "giant schnauzer", "n02099601": "golden retriever",
    "n02101388": "Brittany spaniel", "n02101556": "clumber", "n02102177": "Welsh springer spaniel",
    "n02105056": "groenendael", "n02105412": "kelpie", "n02105855": "Shetland sheepdog",
    "n02107142": "Doberman", "n02110958": "pug", "n02112137": "chow",
}

# Class names of the text sets, in the order of their 1-based label ids (see shared/data PROVENANCE).
AGNEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
DBPEDIA_CLASSES = ["Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder",
                   "MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal", "Plant",
                   "Album", "Film", "WrittenWork"]
STACKOVERFLOW_CLASSES = ["wordpress", "oracle", "svn", "apache", "excel", "matlab", "visual-studio",
                         "cocoa", "osx", "bash", "spring", "hibernate", "scala", "sharepoint", "ajax",
                         "qt", "drupal", "linq", "haskell", "magento"]

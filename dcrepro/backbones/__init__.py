"""Self-supervised image backbones that turn an image set into a feature set (``<set>@<space>``).

DCSS feeds the colour sets (CIFAR-10/100, STL-10, ImageNet-10) to its methods as SimCLR ResNet-34
features (§4.8.2, Tables 1, 3, 4) and MNet to MoCo features (Table 5). No such weights exist offline,
so ``dcrepro backbone`` trains them (on a GPU) and writes the features under
``<data root>/features/<set>/``, where :func:`dcrepro.data.load_dataset` finds them.

Modules: ``resnet`` (ResNet-18/34 with CIFAR / STL / ImageNet stems; own code, no torchvision),
``augment`` (kornia batched SimCLR / MoCo-v2 augmentations), ``train`` (shared loop, LARS / SGD,
warm-up + cosine), ``simclr`` (NT-Xent, projection head), ``moco`` (MoCo-v2 with queue and momentum
encoder), ``features`` (batched encoding, atomic writes), ``views`` (cached features of a pool of weak and
strong views for RPSC / SPICE / SCAN), ``cli`` (``dcrepro backbone``).
Nothing is imported here, so ``import dcrepro.backbones`` costs nothing.
"""

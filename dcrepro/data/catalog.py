"""The catalogue of data sets: one record per data set (id, display name, modality, size, files with their
checksums, where they come from, loader) and the location helpers every data module shares.

:mod:`dcrepro.data.registry` (loading and status, with feature sets dispatched to
:mod:`dcrepro.data.feature_sets`) and :mod:`dcrepro.data.feature_sets` both build on this module, which
imports neither of them. The tables that use a data set are derived from the specs
(:func:`dcrepro.spec.tables_using`).

Checksums: sha256 from the ``PROVENANCE.txt`` of ``shared/data`` for the sets placed there; for the
colour sets, which are not, the md5 values that torchvision checks (the only published ones).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import choice_error
from . import classes as C
from . import loaders

_GH = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
_CDAC = ("thuiar/CDAC-plus", "0c1cd4cfaee3071f8f53d1df14cadebb2f54016d")
_STC2 = ("jacoxu/STC2", "34a28c5a8cf2d6e1db300d32f271f6522db3bde5")
_RAKIB = ("rashadulrakib/short-text-clustering-enhancement", "f363b66e6fd51f9dd1db679d2a9ce55538ab9868")
_USPS = ("niuers/Learning-From-Data-A-Short-Course", "879a698b960e5867f7c2b11f8938fa89c3d21839")


def _gh(src: tuple[str, str], path: str) -> str:
    return _GH.format(repo=src[0], commit=src[1], path=path)


@dataclass(frozen=True)
class FileSpec:
    """One file (or, with ``is_dir``, one folder) a data set needs, relative to the data root."""

    path: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    urls: tuple[str, ...] = ()
    """Direct download locations of this very file (tried in order); empty when it comes in an archive."""
    is_dir: bool = False


@dataclass(frozen=True)
class ArchiveSpec:
    """A published archive that unpacks into the data set's files."""

    urls: tuple[str, ...]
    filename: str
    md5: str | None = None
    sha256: str | None = None
    extract_to: str = ""
    """Folder (relative to the root) the archive is unpacked into."""


@dataclass(frozen=True)
class DatasetSpec:
    """Registry entry of one data set."""

    name: str
    display_name: str
    modality: str
    n_classes: int
    n_samples: int
    """Size the papers report (all splits together)."""
    folder: str
    files: tuple[FileSpec, ...]
    source: str
    splits: str
    """The split(s) the loader provides and which paper protocol uses which."""
    archive: ArchiveSpec | None = None
    how_to_get: str = ""
    """Manual instructions when there is nothing to download (ImageNet subsets), or extra advice."""
    image_size: int | None = None
    """Side length images are resized to (ImageFolder sets only); None = stored size."""
    loader: Callable | None = field(default=None, compare=False, repr=False)


def _idx_files(folder: str, sums: dict, urls: tuple[str, ...]) -> tuple[FileSpec, ...]:
    return tuple(FileSpec(f"{folder}/{name}", sha256=s, md5=m, size=n, urls=tuple(u + name for u in urls))
                 for name, (s, m, n) in sums.items())


_MNIST = {  # name: (sha256, md5, bytes) from shared/data/mnist/PROVENANCE.txt
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                   "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                   "d53e105ee54ea40749a09fcbcd1e9432", 28881),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                                  "9fb629c4189551a2d022fa330f9573f3", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                                  "ec29112dd5afa0611ce80d1b7f02629c", 4542),
}
_FASHION = {  # from shared/data/fashion_mnist/PROVENANCE.txt
    "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                                   "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
    "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                                   "25c81989df183df01b3e8a0aad5dffbe", 29515),
    "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                                  "bef4ecab320f06d8554ea6380940ec79", 4422102),
    "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                                  "bb300cfdad3c16e7a12a480ee83cd310", 5148),
}
_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
MNIST_FILES = _idx_files("mnist", _MNIST, _MNIST_URLS)
FASHION_FILES = _idx_files("fashion_mnist", _FASHION, _FASHION_URLS)


def _text_files(folder: str, src: tuple[str, str], src_dir: str, sums: dict) -> tuple[FileSpec, ...]:
    return tuple(FileSpec(f"{folder}/{name}", sha256=s, size=n, urls=(_gh(src, f"{src_dir}/{name}"),))
                 for name, (s, n) in sums.items())


_CIFAR10_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
                "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"}
_CIFAR100_MD5 = {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"}
_STL10_MD5 = {"train_X.bin": "918c2871b30a85fa023e0c44e0bee87f", "train_y.bin": "5a34089d4802c674881badbb80307741",
              "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82", "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e"}

_IMAGENET_HOWTO = ("Not downloadable on its own: it is a subset of the ILSVRC-2012 training set (free account at "
                   "https://image-net.org/download-images). Copy the training images of the {k} synsets below, "
                   "one folder per synset id, so that {dir}/<wnid>/*.JPEG exists: {wnids}.")

_SPECS = [
    DatasetSpec("mnist", "MNIST", "grey", 10, 70_000, "mnist", MNIST_FILES,
                "LeCun, Cortes & Burges; original IDX files (md5 = torchvision's)",
                "train 60,000 / test 10,000; DCSS pools both ('all')."),
    DatasetSpec("fashion_mnist", "Fashion-MNIST", "grey", 10, 70_000, "fashion_mnist", FASHION_FILES,
                "Xiao, Rasul & Vollgraf 2017 (zalandoresearch/fashion-mnist); original IDX files",
                "train 60,000 / test 10,000; DCSS pools both ('all')."),
    DatasetSpec("2mnist", "2MNIST", "grey", 20, 140_000, "mnist", MNIST_FILES + FASHION_FILES,
                "MNIST ∪ Fashion-MNIST (DCSS §4.1); Fashion-MNIST labels shifted by 10",
                "train 120,000 / test 20,000, plus 'mnist' / 'fashion_mnist'; DCSS uses 'all'."),
    DatasetSpec("usps", "USPS", "grey", 10, 9_298, "usps",
                (FileSpec("usps/usps.h5", "734f88c541104a956d88be2c95d03b4a463ffd74ccc2ba9c80841fb98e3fcb36",
                          size=2913522, urls=(_gh(_USPS, "data/usps.h5"),)),),
                "Hull 1994, HDF5 copy (niuers/Learning-From-Data-A-Short-Course @ 879a698b)",
                "train 7,291 / test 2,007; DCSS pools both ('all'). Pixels: uint8 = round(255·x)."),
    DatasetSpec("cifar10", "CIFAR-10", "rgb", 10, 60_000, "cifar10",
                tuple(FileSpec(f"cifar10/cifar-10-batches-py/{n}", md5=m) for n, m in _CIFAR10_MD5.items()),
                "Krizhevsky 2009, python version",
                "train 50,000 / test 10,000; DCSS pools both, RPSC trains on 'train' and tests on 'test' (I).",
                archive=ArchiveSpec(("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                                    "cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
                                    extract_to="cifar10")),
    DatasetSpec("cifar100_20", "CIFAR-100-20", "rgb", 20, 60_000, "cifar100",
                tuple(FileSpec(f"cifar100/cifar-100-python/{n}", md5=m) for n, m in _CIFAR100_MD5.items()),
                "Krizhevsky 2009, python version; labels = the 20 super-classes",
                "train 50,000 / test 10,000 (as CIFAR-10).",
                archive=ArchiveSpec(("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                                    "cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85",
                                    extract_to="cifar100")),
    DatasetSpec("stl10", "STL-10", "rgb", 10, 13_000, "stl10",
                tuple(FileSpec(f"stl10/stl10_binary/{n}", md5=m) for n, m in _STL10_MD5.items()),
                "Coates, Lee & Ng 2011, binary version (labelled part; unlabeled_X.bin not needed)",
                "train 5,000 / test 8,000; DCSS pools both (13,000), RPSC: 'train' / 'test' (I).",
                archive=ArchiveSpec(("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                                    "stl10_binary.tar.gz", md5="91f7769df0f17e558f3565bffb0c7dfb",
                                    extract_to="stl10")),
    DatasetSpec("imagenet10", "ImageNet-10", "rgb", 10, 13_000, "imagenet10",
                tuple(FileSpec(f"imagenet10/{w}", is_dir=True) for w in sorted(C.IMAGENET10_WNIDS)),
                "ILSVRC-2012 train, the 10 synsets of DAC / CC / SPICE (1,300 images each)",
                "no split: all 13,000 images.",
                how_to_get=_IMAGENET_HOWTO.format(k=10, dir="{dir}", wnids=", ".join(sorted(C.IMAGENET10_WNIDS))),
                image_size=224),
    DatasetSpec("imagenet_dogs", "ImageNet-Dogs", "rgb", 15, 19_500, "imagenet_dogs",
                tuple(FileSpec(f"imagenet_dogs/{w}", is_dir=True) for w in sorted(C.IMAGENET_DOGS_WNIDS)),
                "ILSVRC-2012 train, the 15 dog synsets of DAC / CC / SPICE (1,300 images each)",
                "no split: all 19,500 images.",
                how_to_get=_IMAGENET_HOWTO.format(k=15, dir="{dir}", wnids=", ".join(sorted(C.IMAGENET_DOGS_WNIDS))),
                image_size=224),
    DatasetSpec("tiny_imagenet", "Tiny-ImageNet", "rgb", 200, 110_000, "tiny_imagenet",
                (FileSpec("tiny_imagenet/tiny-imagenet-200/wnids.txt"),
                 FileSpec("tiny_imagenet/tiny-imagenet-200/val/val_annotations.txt"),
                 FileSpec("tiny_imagenet/tiny-imagenet-200/train", is_dir=True),
                 FileSpec("tiny_imagenet/tiny-imagenet-200/val/images", is_dir=True)),
                "CS231n Tiny-ImageNet-200 (64×64)",
                "train 100,000 / test = the 10,000 labelled validation images.",
                archive=ArchiveSpec(("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
                                    "tiny-imagenet-200.zip", md5="90528d7ca1a48142e341f4ef8d21d0de",
                                    extract_to="tiny_imagenet"),
                image_size=None),
    DatasetSpec("snips", "SNIPS", "text", 7, 14_484, "snips",
                _text_files("snips", _CDAC, "data/snips", {
                    "train.tsv": ("a1786382b5cdf520246cc62d6272d282f15dfb35ff66b699fe3384e2e5e0fc72", 801629),
                    "dev.tsv": ("41832ad546f266cf9d4bdceaaad6031ae597892b3cca3ad598a36d91465160e9", 43540),
                    "test.tsv": ("2db4c0022370793c023208e76088dcf69110c3e800d86b29ab35e1912bee5484", 43252)}),
                "SNIPS intents, CDAC+ split (thuiar/CDAC-plus @ 0c1cd4cf)",
                "train 13,084 / dev 700 / test 700 (CDAC+); DAC reports on 'test', DeepDPM on 'train' (I)."),
    DatasetSpec("dbpedia", "DBPedia", "text", 14, 14_000, "dbpedia",
                _text_files("dbpedia", _CDAC, "data/dbpedia", {
                    "train.tsv": ("bb37ac94f6ca25a0a56ee6891929adbbe6263d3cde8c3072486d33d468e5a054", 2234112),
                    "dev.tsv": ("5a00d383c27a649396014f2d0c1f872d47e93c7d200b9d5f8d5dac476cec2129", 122814),
                    "test.tsv": ("5c11329c0bf5a8dbb73803ce1f7c492a983e13d534af65797953749837e227c8", 126372)}),
                "DBPedia-14 subset, CDAC+ split (thuiar/CDAC-plus @ 0c1cd4cf)",
                "train 12,600 / dev 700 / test 700 (CDAC+); as SNIPS."),
    DatasetSpec("stackoverflow", "StackOverflow", "text", 20, 20_000, "stackoverflow",
                _text_files("stackoverflow", _STC2, "dataset", {
                    "StackOverflow.txt": ("56fdb3932c6a2e35c1943b8a3d3c1cf51901fc1139e51b1587091898ffb22e86", 1030059),
                    "StackOverflow_gnd.txt": ("ac6b52afbf696611680f8ea944be682bcdf1979b62fde2b5fa2a9dcc6ab8d7d3", 51000)}),
                "STC2 (Xu et al. 2017; jacoxu/STC2 @ 34a28c5a), 20,000 question titles",
                "no split: SCCL / DEC-CRL cluster all 20,000."),
    DatasetSpec("biomedical", "Biomedical", "text", 20, 20_000, "biomedical",
                _text_files("biomedical", _STC2, "dataset", {
                    "Biomedical.txt": ("5824b74b2064a6b2940b15ab30bab8abe1bd42aa1ec4089e62a0ba28efa2ba87", 1822214),
                    "Biomedical_gnd.txt": ("3e3d2b77aefc232661bb5b1723f123f4b23cf654c777a4a8b6d3c1ef752f836f", 51000)}),
                "STC2 (Xu et al. 2017; jacoxu/STC2 @ 34a28c5a), 20,000 paper titles",
                "no split: SCCL / DEC-CRL cluster all 20,000."),
    DatasetSpec("agnews", "AgNews", "text", 4, 8_000, "agnews",
                _text_files("agnews", _RAKIB, "data", {
                    "agnewsdataraw-8000": ("9a3ecfb3d5daef1cdef2fa1cc23d1f1c23784220116c39072d6d8422f5781c06", 1334725)}),
                "AG News 8,000-text subset of Rakib et al. 2020 (as used by SCCL)",
                "no split: SCCL / DEC-CRL cluster all 8,000."),
]
REGISTRY: dict[str, DatasetSpec] = {s.name: replace(s, loader=getattr(loaders, f"load_{s.name}")) for s in _SPECS}
"""Every data set, one record each; its loader is ``dcrepro.data.loaders.load_<id>``."""


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_ALIASES = {_norm(key): s.name for s in REGISTRY.values() for key in (s.name, s.display_name)}



def resolve_base(name: str) -> str:
    """Canonical id of a registered (non-feature) data set; display names and spelling variants accepted."""
    key = _ALIASES.get(_norm(str(name)))
    if key is None:
        raise choice_error("data set", name, list(REGISTRY))
    return key


def display_name(ds: str) -> str:
    """How tables and reports name a data set: the registry's display name (feature sets: ``CIFAR-10 (simclr_h)``);
    a name the registry does not know (tests' toy sets) is shown as is."""
    base, _, setting = ds.partition("@")
    return (REGISTRY[base].display_name if base in REGISTRY else base) + (f" ({setting})" if setting else "")


def data_root() -> Path:
    """The data root (:func:`dcrepro.paths.data_root`: ``$DCREPRO_DATA``, else ``~/.cache/dcrepro``)."""
    from ..paths import data_root as _data_root

    return _data_root()


def _root(root) -> Path:
    return Path(root).expanduser().resolve() if root is not None else data_root()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _check_file(f: FileSpec, root: Path, hashes: bool) -> str:
    """'ok' | 'missing' | 'size mismatch' | 'sha256 mismatch' | 'md5 mismatch' | 'unverified' (no checksum)."""
    p = root / f.path
    if f.is_dir:
        return "ok" if p.is_dir() and any(p.iterdir()) else "missing"
    if not p.is_file():
        return "missing"
    if f.size is not None and p.stat().st_size != f.size:
        return "size mismatch"
    if not hashes:
        return "ok"
    if f.sha256:
        return "ok" if file_digest(p, "sha256") == f.sha256 else "sha256 mismatch"
    if f.md5:
        return "ok" if file_digest(p, "md5") == f.md5 else "md5 mismatch"
    return "unverified"


EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded"
"""Small data sets shipped inside the package (files byte-identical to the registry's, with their
PROVENANCE.txt), laid out like a data root. Used for a set the data root lacks entirely, so a fresh
install runs real work with nothing configured."""
EMBEDDED = ("usps", "snips", "agnews")
EMBEDDED_SOURCE = "embedded copy"


def _source(spec: DatasetSpec, root: Path, embedded: bool = True) -> tuple[Path, str]:
    """(root to read ``spec`` from, 'data root' | 'embedded copy'): the embedded copy when ``root`` holds
    none of the set's files (a partial or corrupt copy in the root is reported, never replaced)."""
    if (embedded and spec.name in EMBEDDED and all(_check_file(f, root, False) == "missing" for f in spec.files)
            and all((EMBEDDED_ROOT / f.path).is_file() for f in spec.files)):
        return EMBEDDED_ROOT, EMBEDDED_SOURCE
    return root, "data root"


def _where_from(spec: DatasetSpec, root: Path) -> str:
    folder = root / spec.folder
    if spec.archive is not None:
        a = spec.archive
        check = f"md5 {a.md5}" if a.md5 else f"sha256 {a.sha256}"
        dest = root / a.extract_to
        unpack = f"unzip {a.filename} -d {dest}" if a.filename.endswith(".zip") else f"tar xzf {a.filename} -C {dest}"
        return (f"Download {a.urls[0]} ({check}) and unpack it into {dest} (`mkdir -p {dest} && {unpack}`), "
                f"or run `dcrepro data fetch {spec.name}` when online.")
    if any(f.urls for f in spec.files):
        lines = [f"  {root / f.path}  <-  {f.urls[0]}" for f in spec.files if f.urls]
        return ("Download each file to the path shown (or run `dcrepro data fetch "
                f"{spec.name}` when online):\n" + "\n".join(lines))
    return spec.how_to_get.format(dir=folder)


"""Roman data models without roman_datamodels: read and write Roman ASDF files.

Contract (stable API for the step framework and the reference-file code)
-------------------------------------------------------------------------
``open(init, model_type=None, *, memmap=False) -> DataModel``
    ``init`` is a path (``str``/``Path``) to a Roman ASDF file or an existing model.
    The model class is chosen from the tag of the file's ``roman`` node (as
    ``roman_datamodels.datamodels.open`` does).  A model passed in is returned as a
    shallow copy sharing its data (closing it does not close the original).
    ``model_type`` (a model class) makes a mismatch an ``InputFileError``.
    Arrays are loaded lazily (on first attribute access); ``memmap=True`` maps
    uncompressed blocks read-only.  Every expected failure (missing file, not
    ASDF, truncated, not a Roman file, wrong model type) raises
    ``romancal_lite.errors.InputFileError`` with a one-line message naming the file.

Model classes (all subclasses of ``DataModel``)
    ``ScienceRawModel`` (``wfi_science_raw``), ``RampModel`` (``ramp``),
    ``ImageModel`` (``wfi_image``), ``SegmentationMapModel`` (``segmentation_map``,
    the ``_segm`` product of ``source_catalog``), ``WfiWcsModel`` (``wfi_wcs``, the
    ``_wcs`` product of ``roman_elp``), ``MosaicModel`` (``wfi_mosaic``, the ``_coadd``
    product of ``resample``), ``MosaicSegmentationMapModel``
    (``mosaic_segmentation_map``, its ``_segm``) and the reference models ``MaskRefModel``,
    ``SaturationRefModel``, ``LinearityRefModel``, ``InverselinearityRefModel``,
    ``DarkRefModel``, ``GainRefModel``, ``ReadnoiseRefModel``, ``FlatRefModel``,
    ``PhotomRefModel`` (``wfi_img_photom``), ``DistortionRefModel``,
    ``RefpixRefModel``, ``SuperbiasRefModel``, ``IpcRefModel``, ``PixelareaRefModel``,
    ``DarkdecaysignalRefModel``.

Constructing models
    ``Model()``                         empty model (``meta`` empty, no arrays).
    ``Model(path)``                     same as ``open(path, model_type=Model)``.
    ``Model.create_minimal(defaults)``  complete, schema-valid default ``meta`` (the
                                        roman_datamodels 1.1 / RAD 2.x common metadata)
                                        deep-merged with ``defaults`` (a mapping that
                                        may also hold arrays, e.g.
                                        ``{"data": arr, "meta": {"exposure": {...}}}``).
    ``Model.create_fake_data(defaults=None, shape=None)``  as ``create_minimal`` plus
                                        zero-filled arrays of the schema dtypes.
    ``Model.from_model(other)``         new model of this class carrying over
                                        ``other``'s full ``meta`` (deep copy), e.g.
                                        ``RampModel.from_model(raw)``;
                                        ``ImageModel.from_model(ramp)`` also adds the
                                        image-only meta (``photometry``, ``wcs``...).

Using models
    ``model.meta``                      attribute-dict view (``model.meta.exposure.
                                        read_pattern`` == ``model.meta["exposure"]
                                        ["read_pattern"]``); assignments write through.
    ``model.data`` / ``model.dq`` ...   arrays (numpy, loaded on first access).
    ``model.meta.cal_step.<step>``      ``"INCOMPLETE"`` / ``"COMPLETE"`` / ``"SKIPPED"``.
    ``model.save(path, dir_path=None) -> Path``  writes atomically (temp file in the
                                        target directory + ``os.replace``) with the
                                        current tags; sets ``meta.filename`` and
                                        ``meta.file_date`` in the written file.
    ``model.copy()``                    deep copy (arrays loaded and copied).
    ``model.get_crds_parameters()``     flat ``{"roman.meta.a.b": scalar}`` dict
                                        (same content as roman_datamodels').
    ``model.crds_observatory == "roman"``; ``model.info()``, ``model.search()``;
    ``with open(p) as m: ...`` closes the file; ``model.close()``.
    ``read_pattern(model)``, ``frame_time(model)``: validated accessors raising
    ``InputFileError`` when the exposure metadata is missing or malformed.
    ``validate_exposure(model)``: the metadata the pipeline reads and the arrays
                                        (schema data types, dimensions, shapes that
                                        fit ``data``) of a user's exposure, checked
                                        before any work (``InputFileError``;
                                        ``NoScienceDataError`` without science pixels).

Untrusted files and safe outputs
    Paths are literal (``#``, ``%`` are ordinary characters): asdf is only ever given
    open files. ``open_regular_file(path)`` / ``check_regular_file(path)`` refuse a
    directory, FIFO or device by name, without blocking; ``open`` also refuses YAML
    alias bombs, recursive or too deep trees and binary blocks that do not fit the
    file. Saves are atomic; inside ``with deferred_outputs():`` every output appears
    at the end of the block, or none does.

Libraries of exposures
    ``ModelLibrary(init, *, on_disk=True, temp_directory=None)`` (`library`): the
                                        members of an association (or a list of files
                                        or models), borrowed one at a time inside
                                        ``with library:`` and shelved again.

File names
    ``filenames.replace_suffix(name, suffix)`` / ``filenames.split_suffix(name)``
    implement the suffix conventions of seeds/000:4987-5037 (``_uncal`` -> ``_cal``).

Long-lived processes
    ``keep_schema_documents()``: keep, for the rest of the process, the schema
                                        documents asdf's validation parses for every
                                        file (a batch worker opens the same kinds of
                                        files for every exposure); validation unchanged.

The ASDF extension (``get_extension()``) is passed explicitly to every
``asdf.open``/``AsdfFile`` this package makes, so it coexists with
roman_datamodels when both are installed; unknown Roman tags round-trip untouched.
Those opens, lazy reads and writes run in ``asdf_context()``: asdf with every
installed extension but roman_datamodels' (never imported), asdf's global
configuration untouched.
"""

from __future__ import annotations

from . import filenames
from ._accessors import frame_time, read_pattern
from ._blocks import Lz4Chunks
from ._converters import asdf_context, get_extension, get_extensions
from ._core import (
    MODEL_REGISTRY,
    DataModel,
    MappedArray,
    keep_schema_documents,
    open,
    open_asdf_file,
    write_asdf_atomic,
)
from ._files import check_regular_file, deferred_outputs, open_regular_file
from ._models import (
    DarkdecaysignalRefModel,
    DarkRefModel,
    DistortionRefModel,
    FlatRefModel,
    GainRefModel,
    ImageModel,
    InverselinearityRefModel,
    IpcRefModel,
    LinearityRefModel,
    MaskRefModel,
    MosaicModel,
    MosaicSegmentationMapModel,
    PhotomRefModel,
    PixelareaRefModel,
    RampModel,
    ReadnoiseRefModel,
    RefpixRefModel,
    SaturationRefModel,
    ScienceRawModel,
    SegmentationMapModel,
    SuperbiasRefModel,
    WfiWcsModel,
)
from ._node import ListNode, Node, TaggedListNode, TaggedNode, TaggedStr, TaggedTime
from ._validate import validate_exposure
from .library import BorrowError, ModelLibrary

__all__ = [
    "MODEL_REGISTRY",
    "BorrowError",
    "ModelLibrary",
    "DarkRefModel",
    "DataModel",
    "MappedArray",
    "DistortionRefModel",
    "FlatRefModel",
    "GainRefModel",
    "ImageModel",
    "InverselinearityRefModel",
    "IpcRefModel",
    "LinearityRefModel",
    "ListNode",
    "Lz4Chunks",
    "MaskRefModel",
    "MosaicModel",
    "MosaicSegmentationMapModel",
    "Node",
    "PhotomRefModel",
    "PixelareaRefModel",
    "DarkdecaysignalRefModel",
    "RampModel",
    "ReadnoiseRefModel",
    "RefpixRefModel",
    "SaturationRefModel",
    "ScienceRawModel",
    "SegmentationMapModel",
    "WfiWcsModel",
    "SuperbiasRefModel",
    "TaggedListNode",
    "TaggedNode",
    "TaggedStr",
    "TaggedTime",
    "asdf_context",
    "check_regular_file",
    "deferred_outputs",
    "keep_schema_documents",
    "filenames",
    "frame_time",
    "get_extension",
    "get_extensions",
    "open",
    "open_asdf_file",
    "open_regular_file",
    "read_pattern",
    "validate_exposure",
    "write_asdf_atomic",
]

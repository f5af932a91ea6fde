"""The Step base class: parameters, references, status, provenance, output files.

A step declares class attributes and one method::

    class SaturationStep(Step):
        \"\"\"Flag saturated pixels.\"\"\"

        class_alias = "saturation"
        reference_file_types = ("saturation",)
        n_pix_grow_sat = Param(int, 0, "Grow saturated pixels by this many pixels",
                               minimum=0)

        def process(self, model):
            ref = self.get_reference_file(model, "saturation")
            ...
            return model

The base class does the rest, in small methods called by `Step.run`: open the input,
honour ``skip``, check the output location before any work, time the step, record
``meta.cal_step.<alias>``, record provenance (`Step.finalize_result`) and save the result
as ``<basename>_<suffix>.asdf``.

Parameter precedence (lowest first): class defaults < parameter files (in the order
given) < keyword arguments / command line (`Step.build_config`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from romancal_lite.errors import ConfigError, InputFileError, OutputError, ReferenceFileError
from romancal_lite.interrupts import raise_lost_signal, signals_held
from romancal_lite.stpipe.config import (
    ParameterSet,
    dump_parameter_file,
    load_parameter_file,
    merge_configs,
    split_dotted,
)
from romancal_lite.stpipe.log import step_logger
from romancal_lite.stpipe.memory import ordinary_pages
from romancal_lite.stpipe.naming import add_known_suffix, make_output_name
from romancal_lite.stpipe.params import Param, format_errors, validate_parameters
from romancal_lite.stpipe.threads import one_blas_thread

__all__ = ["Step"]

#: Status values written to ``meta.cal_step.<alias>``.
COMPLETE = "COMPLETE"
SKIPPED = "SKIPPED"
#: Status of a step that does not apply to the exposure (e.g. wfi18_transient elsewhere).
NOT_APPLICABLE_STATUS = "N/A"
#: ``meta.cal_step`` status of a step that ran and did not succeed (RAD allows it;
#: romancal's tweakreg records it when the fit fails).
FAILED = "FAILED"

#: Value of a reference file (or override) meaning "no reference applies".
NOT_APPLICABLE = "N/A"

ConfigFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


class Step:
    """Base class of all calibration steps (and, through `Pipeline`, pipelines).

    Parameters
    ----------
    name : str, optional
        Name of this instance; defaults to ``class_alias``. Inside a pipeline it is the
        step's key in ``step_defs``.
    parent : Step, optional
        The pipeline this step belongs to.
    **parameters
        Parameter values; all are validated together and unknown names rejected.

    Raises
    ------
    ConfigError
        Listing every invalid or unknown parameter.
    """

    #: The one name of the step: CLI name, module name, pipeline attribute,
    #: ``meta.cal_step`` key and default output suffix.
    class_alias: ClassVar[str] = ""
    #: Reference file types used; each gets an ``override_<reftype>`` parameter.
    reference_file_types: ClassVar[tuple[str, ...]] = ()
    #: ``model_type`` passed to ``romancal_lite.datamodels.open`` for path inputs.
    model_type: ClassVar[type | None] = None
    #: Whether `open_input` memory-maps the uncompressed arrays of an input file
    #: (read-only; for steps that only read their input's arrays).
    memmap_input: ClassVar[bool] = False
    #: Whether `run` takes several inputs at once (a list, or an association file);
    #: the command line then accepts several input files.
    accepts_many: ClassVar[bool] = False
    #: Whether `run` writes ``meta.cal_step.<cal_step_key>`` (pipelines do not).
    record_cal_step: ClassVar[bool] = True
    #: Key of ``meta.cal_step`` this step records; defaults to ``class_alias``. Only
    #: where the official RAD schema spells the step differently (``dark``,
    #: ``flat_field``) does a step set it.
    cal_step_key: ClassVar[str] = ""
    #: Whether NumPy may advise transparent huge pages for the step's new arrays
    #: (`romancal_lite.stpipe.memory`): faster for scattered writes into big arrays
    #: (drizzle), slower where many fresh images are made (the source catalog).
    huge_pages: ClassVar[bool] = True

    skip = Param(bool, False, "Skip this step (the input is passed on unchanged)")
    save_results = Param(bool, False, "Save the result to <basename>_<suffix>.asdf")
    output_dir = Param(str, None, "Directory of output files; None: the current directory")
    output_file = Param(
        str, None, "Basename of the output file; None: from the input name. Implies saving"
    )
    suffix = Param(str, None, "Suffix of the output file name; None: the step's alias")

    _params: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.class_alias:
            if not cls.class_alias.isidentifier():
                raise TypeError(f"{cls.__name__}.class_alias must be an identifier")
            add_known_suffix(cls.class_alias)
        cls.reference_file_types = tuple(cls.reference_file_types)
        for reftype in cls.reference_file_types:
            name = f"override_{reftype}"
            if not isinstance(getattr(cls, name, None), Param):
                param = Param(str, None, f"Use this {reftype} reference file, not the selected one")
                setattr(cls, name, param)
                param.__set_name__(cls, name)
        suffix = cls.__dict__.get("suffix")
        if isinstance(suffix, Param):
            # a redeclared suffix (e.g. "cal" for a pipeline) still accepts None, which
            # parameter files written by stpipe hold, meaning "the class default"
            suffix.nullable = True
        params: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, Param):
                    params[key] = value
        cls._params = params

    def __init__(self, name: str | None = None, parent: Step | None = None, **parameters: Any):
        self.name = name or self.class_alias or type(self).__name__.lower()
        self.parent = parent
        names = [self.name]
        node = parent
        while node is not None:
            names.insert(0, node.name)
            node = node.parent
        self.log = step_logger(*names)
        self._values: dict[str, Any] = {key: p.default for key, p in self._params.items()}
        converted, errors = validate_parameters(self._params, parameters)
        if errors:
            raise ConfigError(format_errors(f"{self._kind()} {self.name!r}", errors))
        self._values.update(converted)
        self._reference_files_used: list[tuple[str, str]] = []
        self._pedigrees: dict[str, str] = {}
        self._input_name: str | None = None
        self._reference_source: Any = None

    # ------------------------------------------------------------------ parameters

    @classmethod
    def spec(cls) -> dict[str, Param]:
        """Return the declared parameters of this class, base-class ones first.

        Returns
        -------
        dict of str to Param
            Name -> declaration.
        """
        return dict(cls._params)

    @classmethod
    def _kind(cls) -> str:
        return "step"

    @classmethod
    def class_path(cls) -> str:
        """Return ``"module:QualName"``, the form used by the registry and parameter files.

        Returns
        -------
        str
            The class path.
        """
        return f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def config_errors(cls, config: Mapping[str, Any], prefix: str = "") -> list[str]:
        """List every problem of a normalized parameter set for this class.

        Parameters
        ----------
        config : mapping
            ``{"parameters": {...}, "steps": {...}}``.
        prefix : str, optional
            Prepended to names in the messages (``"steps.saturation."``).

        Returns
        -------
        list of str
            Unknown or invalid parameters (empty if valid).
        """
        errors = validate_parameters(cls._params, config.get("parameters") or {}, prefix)[1]
        for step in config.get("steps") or {}:
            errors.append(f"{prefix}steps.{step}: {cls.__name__} has no steps")
        return errors

    @classmethod
    def build_config(
        cls,
        config_file: ConfigFiles = None,
        base: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> ParameterSet:
        """Merge the parameter sources in order of precedence and validate the result.

        Parameters
        ----------
        config_file : path or sequence of paths, optional
            Parameter files (ASDF or YAML), applied in order, later ones winning.
        base : mapping, optional
            A normalized parameter set below the files (the runner's defaults, e.g.
            ``save_results=True``).
        **kwargs
            Parameters; for pipelines ``steps={"saturation": {...}}`` or dotted names
            ``"steps.saturation.skip"``. They override everything else.

        Returns
        -------
        dict
            ``{"parameters": {...}, "steps": {...}}``.

        Raises
        ------
        ConfigError
            For unreadable files, a file for another class, or any invalid parameter
            (all reported in one message).
        """
        layers: list[Mapping[str, Any]] = [base or {}]
        if config_file is not None:
            files = [config_file] if isinstance(config_file, str | os.PathLike) else config_file
            for path in files:
                loaded = load_parameter_file(path)
                cls._check_file_class(loaded.get("class"), path)
                layers.append(cls._normalize_steps(loaded, path))
        steps = kwargs.pop("steps", None) or {}
        if not isinstance(steps, Mapping):
            raise ConfigError(f"'steps' must map step names to parameters, not {steps!r}")
        kw = split_dotted(kwargs)
        layers.append(kw)
        layers.append({"steps": {k: dict(v) for k, v in steps.items()}})
        config = merge_configs(*layers)
        errors = cls.config_errors(config)
        if errors:
            name = cls.class_alias or cls.__name__
            raise ConfigError(format_errors(f"{cls._kind()} {name!r}", errors))
        return config

    @classmethod
    def _check_file_class(cls, file_class: str | None, path: Any) -> None:
        if not file_class:
            return
        tail = str(file_class).replace(":", ".").rsplit(".", 1)[-1]
        if tail not in {cls.__name__, cls.class_alias}:
            raise ConfigError(f"parameter file {path} is for {file_class}, not {cls.__name__}")

    @classmethod
    def _normalize_steps(cls, loaded: ParameterSet, path: Any) -> ParameterSet:
        return loaded

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], name: str | None = None, parent: Step | None = None
    ) -> Step:
        """Instantiate from a normalized parameter set (see `build_config`).

        Parameters
        ----------
        config : mapping
            ``{"parameters": {...}[, "steps": {...}]}``.
        name : str, optional
            Instance name.
        parent : Step, optional
            Enclosing pipeline.

        Returns
        -------
        Step
            The configured instance.
        """
        if config.get("steps"):
            raise ConfigError(f"{cls.__name__} has no steps")
        return cls(name=name, parent=parent, **(config.get("parameters") or {}))

    def get_pars(self) -> dict[str, Any]:
        """Return the current parameter values.

        Returns
        -------
        dict
            Name -> value, in declaration order.
        """
        return dict(self._values)

    def export_config(self, path: str | os.PathLike[str]) -> None:
        """Write the current parameters as a parameter file (ASDF or YAML by extension).

        Parameters
        ----------
        path : str or path-like
            Destination; ``.asdf`` gives an ASDF file, anything else YAML.
        """
        dump_parameter_file(self._export_tree(), path)

    def _export_tree(self) -> dict[str, Any]:
        return {"class": self.class_path(), "name": self.name, "parameters": self.get_pars()}

    # ------------------------------------------------------------------ running

    @classmethod
    def call(cls, input: Any, *, config_file: ConfigFiles = None, **parameters: Any) -> Any:  # noqa: A002
        """Configure a new instance, run it on ``input`` and return the result.

        Parameters
        ----------
        input : str, path-like or model
            Input file or model.
        config_file : path or sequence of paths, optional
            Parameter files, see `build_config`.
        **parameters
            Parameters overriding the files.

        Returns
        -------
        object
            The step's result (usually a model).
        """
        config = cls.build_config(config_file, **parameters)
        return cls.from_config(config).run(input)

    def run(self, input: Any) -> Any:  # noqa: A002
        """Run the step on ``input``: the only entry point that does the framework work.

        A step whose class sets ``huge_pages = False`` allocates its arrays with
        ordinary memory pages (`romancal_lite.stpipe.memory.ordinary_pages`). A step
        run from the outside (no parent) runs with BLAS on one thread
        (`romancal_lite.stpipe.threads.one_blas_thread`).

        Parameters
        ----------
        input : str, path-like or model
            Input file or model.

        Returns
        -------
        object
            The result of `process`, or the input model when ``skip`` is set.
        """
        with contextlib.ExitStack() as stack:
            if self.parent is None:
                stack.enter_context(one_blas_thread())
            if not self.huge_pages:
                stack.enter_context(ordinary_pages())
            return self._run(input)

    __call__ = run

    def _run(self, input: Any) -> Any:  # noqa: A002
        """Do the work of `run` (see there)."""
        start = time.perf_counter()
        if self.parent is None:
            self._input_name = _name_of(input)
            _ACTIVE_INPUT[0] = self._input_name
        model = self.open_input(input)
        if self.parent is None:
            self._input_name = self._input_name or _name_of(model)
        if self.skip:
            self.log.info("Step %s skipped", self.name)
            self.record_status(model, SKIPPED)
            return model
        if self.parent is None:
            self.check_outputs(input)
            self._reference_source = None
            if self.selects_references():
                self.resolve_reference_source(model)
            elif self.reference_file_types:
                from romancal_lite.references import OVERRIDES_ONLY

                self._reference_source = OVERRIDES_ONLY
                self.log.info("References: %s", OVERRIDES_ONLY.description)
        self.log.info("Step %s running", self.name)
        self.log.debug("Step %s parameters: %s", self.name, self.get_pars())
        self._reference_files_used = []
        self._pedigrees: dict[str, str] = {}
        self._skipped_reason: str | None = None
        self._status: str | None = None
        result = self.process(model)
        raise_lost_signal()  # a Ctrl-C dropped by Python in the step ends the run here
        self.record_status(
            result, self._status or (SKIPPED if self._skipped_reason else COMPLETE)
        )
        self.finalize_result(result)
        if self.parent is None:
            self.warn_if_no_usable_pixel(result)
        if self.saves_result():
            self.save(result, self.output_path())
        self.log.info("Step %s done in %.2f s", self.name, time.perf_counter() - start)
        return result

    def process(self, model: Any) -> Any:
        """Do the step's work; every step overrides this.

        Parameters
        ----------
        model : object
            The opened input model.

        Returns
        -------
        object
            The result model.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement process()")

    def warn_if_no_usable_pixel(self, result: Any) -> bool:
        """Log a warning if an image result has no usable pixel (all NaN or DO_NOT_USE).

        An exposure can be valid and still give nothing to measure (a single
        resultant, every pixel saturated or unusable): the image is written, but not
        silently.

        Parameters
        ----------
        result : object
            The result; only a 2-D ``data`` array (with ``dq`` if present) is looked at.

        Returns
        -------
        bool
            True if the warning was given.
        """
        import numpy as np

        try:
            data = result.data
        except (AttributeError, KeyError):
            return False
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.size == 0:
            return False
        try:
            dq = result.dq
        except (AttributeError, KeyError):
            dq = None
        if not (isinstance(dq, np.ndarray) and dq.shape == data.shape):
            dq = None
        from romancore.dqflags import pixel

        # by blocks of rows, stopping at the first usable pixel (usually in the first)
        for start in range(0, data.shape[0], 64):
            usable = np.isfinite(data[start : start + 64])
            if dq is not None:
                usable &= (dq[start : start + 64] & np.uint32(pixel.DO_NOT_USE)) == 0
            if usable.any():
                return False
        self.log.warning(
            "%s: the result of %s has no usable pixel: every pixel is NaN or flagged"
            " DO_NOT_USE (e.g. a single resultant, or every resultant saturated or"
            " unusable)",
            self._input_name or self.name,
            self.name,
        )
        return True

    def mark_skipped(self, reason: str) -> None:
        """Record, from inside `process`, that the step did nothing (status SKIPPED).

        Parameters
        ----------
        reason : str
            Why (logged as a warning), e.g. "no SATURATION reference applies".
        """
        self._skipped_reason = reason
        self.log.warning("Step %s skipped: %s", self.name, reason)

    def mark_not_applicable(self, reason: str) -> None:
        """Record, from inside `process`, that the step does not apply (status "N/A").

        Parameters
        ----------
        reason : str
            Why (logged at info level), e.g. "detector WFI05 is not WFI18".
        """
        self._status = NOT_APPLICABLE_STATUS
        self.log.info("Step %s does not apply: %s", self.name, reason)

    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Open a path with ``romancal_lite.datamodels.open``; pass models through.

        Parameters
        ----------
        input : str, path-like or model
            The input.

        Returns
        -------
        object
            A model.

        Raises
        ------
        InputFileError
            If a path does not name an existing regular file, or the file is not a
            usable model (`romancal_lite.datamodels.open`); an exposure's metadata
            and arrays are checked (`romancal_lite.datamodels.validate_exposure`).
        NoScienceDataError
            If the exposure has no science pixel.
        """
        if not isinstance(input, str | os.PathLike):
            return input
        if not os.path.lexists(input):
            raise InputFileError(f"input file not found: {os.fspath(input)}")
        from romancal_lite import datamodels

        model = datamodels.open(input, model_type=self.model_type, memmap=self.memmap_input)
        try:
            datamodels.validate_exposure(model)
        except BaseException:
            model.close()
            raise
        return model

    def record_status(self, model: Any, status: str) -> None:
        """Write ``meta.cal_step.<cal_step_key> = status`` if the model has the field.

        Parameters
        ----------
        model : object
            The model.
        status : str
            ``"COMPLETE"`` or ``"SKIPPED"``.
        """
        key = self.cal_step_key or self.class_alias
        if not self.record_cal_step or not key:
            return
        try:
            cal_step = model.meta.cal_step
        except AttributeError:
            # e.g. a raw (level 1) model: its schema has no cal_step
            self.log.debug("%s has no meta.cal_step; status not recorded", type(model).__name__)
            return
        try:
            setattr(cal_step, key, status)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self.log.warning("Cannot record %s status in meta.cal_step: %s", status, exc)

    # ------------------------------------------------------------------ references

    def get_override(self, reftype: str) -> str | None:
        """Return the ``override_<reftype>`` value of this step or an enclosing pipeline.

        Parameters
        ----------
        reftype : str
            Reference file type.

        Returns
        -------
        str or None
            The override path (or ``"N/A"``), None if not overridden.
        """
        node: Step | None = self
        while node is not None:
            value = node._values.get(f"override_{reftype}")
            if value is not None:
                return value
            node = node.parent
        return None

    def get_reference_file(self, model: Any, reftype: str) -> str:
        """Return the reference file to use for ``reftype`` and record it for provenance.

        Parameters
        ----------
        model : object
            The science model (its metadata selects the reference).
        reftype : str
            One of ``reference_file_types``.

        Returns
        -------
        str
            The ``override_<reftype>`` path if set, else the selection of
            ``romancal_lite.references.get_reference_file``; ``"N/A"`` means no
            reference applies.

        Raises
        ------
        ReferenceFileError
            If an override names a missing file.
        """
        if reftype not in self.reference_file_types:
            raise ValueError(f"{type(self).__name__} does not declare reference type {reftype!r}")
        path = self.get_override(reftype)
        if path is not None:
            if path != NOT_APPLICABLE:
                from romancal_lite.references import check_override

                check_override(reftype, path)
            self.log.info("Using override %s reference file %s", reftype, path)
        else:
            from romancal_lite import references

            source = self._root()._reference_source or self.resolve_reference_source(model)
            path = str(references.get_reference_file(model, reftype, source=source))
            self.log.info("Using %s reference file %s", reftype, path)
        self._reference_files_used.append((reftype, path))
        return path

    def selects_references(self) -> bool:
        """Return whether a run would select a reference file (one not overridden).

        Returns
        -------
        bool
            True if the step is not skipped and some reference type has no
            ``override_<reftype>``.
        """
        if self.skip:
            return False
        return any(self.get_override(r) is None for r in self.reference_file_types)

    def resolve_reference_source(self, model: Any) -> Any:
        """Decide, once per run, where references come from, and say it in the log.

        See `romancal_lite.references.reference_source`: the user's CRDS, the
        built-in references of a simulation they match, or (by explicit opt-in
        only) the invented built-in references, which is logged as a warning.

        Parameters
        ----------
        model : object
            The input exposure as opened by the run.

        Returns
        -------
        romancal_lite.references.ReferenceSource
            The source, also kept by the top-level step for the whole run.

        Raises
        ------
        ReferenceFileError
            If no source applies (no CRDS, not a matchable simulation, no opt-in).
        """
        from romancal_lite import references

        source = references.reference_source(model)
        if source.invented:
            self.log.warning("References: %s", source.description)
        else:
            self.log.info("References: %s", source.description)
        self._root()._reference_source = source
        return source

    def open_reference(
        self,
        model: Any,
        reftype: str,
        expected_shape: tuple[int, ...] | None = None,
    ) -> Any:
        """Select, check and open the ``reftype`` reference file for ``model``.

        The one way steps read reference files: `get_reference_file` (override or
        CRDS selection, recorded for provenance), then
        `romancal_lite.references.check_reference` (type, detector, optical element,
        array shapes), then ``romancal_lite.datamodels.open``.

        Parameters
        ----------
        model : object
            The science model.
        reftype : str
            One of ``reference_file_types``.
        expected_shape : tuple of int, optional
            Shape the reference's 2-D arrays must have; default the last two
            dimensions of ``model.data``.

        Returns
        -------
        DataModel or None
            The opened reference model (close it, or use it in a ``with`` block), or
            None when the reference is "N/A" (does not apply). Its uncompressed arrays
            are read-only memory maps.

        Raises
        ------
        ReferenceFileError
            If the file is missing, unreadable or does not fit the science data.
        """
        path = self.get_reference_file(model, reftype)
        if path == NOT_APPLICABLE:
            return None
        from romancal_lite import datamodels
        from romancal_lite.references import check_reference
        from romancal_lite.references.uncompressed import (
            reference_cache_dir,
            uncompressed_reference,
        )

        readable, cached = path, False
        if reference_cache_dir() is not None:
            # an uncompressed copy (romancal_lite.references.uncompressed): decompressed
            # once per file, then mapped by every run
            try:
                copy = uncompressed_reference(path)
            except (InputFileError, OSError) as exc:
                self.log.warning("reference cache not used for %s: %s", path, exc)
            else:
                if copy != Path(path):
                    readable, cached = os.fspath(copy), True
        try:
            # references are only read: map their (uncompressed) arrays, no copy. A
            # cached copy is not validated again: this package wrote it from the
            # original's validated tree (the tree, block and reference checks still run)
            ref = datamodels.open(readable, memmap=True, validate=not cached)
        except InputFileError as exc:
            # the file-level checks say precisely what is wrong (missing, not ASDF,
            # another reference type...)
            check_reference(path, reftype, model, expected_shape=expected_shape)
            raise ReferenceFileError(str(exc)) from exc
        try:
            # the same checks on the opened model: the file is parsed once
            check_reference(ref, reftype, model, expected_shape=expected_shape)
        except BaseException:
            ref.close()
            raise
        try:
            pedigree = ref.meta.pedigree
        except (AttributeError, KeyError):
            pedigree = None
        if pedigree:
            self._pedigrees[path] = str(pedigree)  # recorded by finalize_result
        return ref

    def finalize_result(self, model: Any) -> None:
        """Record provenance on the result: software version and reference files used.

        Parameters
        ----------
        model : object
            The result; fields it lacks are skipped with a warning.
        """
        if model is None or not hasattr(model, "meta"):
            return
        from romancal_lite import __version__

        _set_meta(self, model, "calibration_software_version", __version__)
        if not self._reference_files_used and self.parent is not None:
            return
        from romancal_lite.references import reference_pedigree

        source = self._root()._reference_source
        for reftype, path in self._reference_files_used:
            _set_meta(self, model, f"ref_file.{reftype}", path)
            if path != NOT_APPLICABLE:
                pedigree = self._pedigrees.get(path) or reference_pedigree(path)
                _set_meta_item(self, model, "ref_file.pedigree", reftype, pedigree)
        if source is not None:
            _set_meta(self, model, "ref_file.source", source.description)
            if source.context is not None:
                _set_meta(self, model, "ref_file.crds.context", source.context)
            if self.parent is None and source.invented:
                _append_cal_log(self, model, f"WARNING: {source.description}")

    # ------------------------------------------------------------------ outputs

    def saves_result(self) -> bool:
        """Return whether `run` writes the result (``save_results`` or ``output_file``).

        Returns
        -------
        bool
            True if the step is not skipped and saving is requested.
        """
        return not self.skip and bool(self.save_results or self.output_file)

    def _root(self) -> Step:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def _search(self, key: str) -> Any:
        node: Step | None = self
        while node is not None:
            value = node._values.get(key)
            if value is not None:
                return value
            node = node.parent
        return None

    def output_path(self) -> Path:
        """Return where this step's result is saved.

        ``<output_dir>/<basename>_<suffix>.asdf``: the basename comes from
        ``output_file`` or else the (top-level) input name, with a known suffix
        replaced; ``output_dir`` is searched up the enclosing pipelines; the suffix
        defaults to the class's declared ``suffix`` default (a pipeline may redeclare
        it, e.g. ``"cal"``), else ``class_alias``.

        Returns
        -------
        pathlib.Path
            The output path.

        Raises
        ------
        OutputError
            If there is no name to derive the output from.
        """
        base = self.output_file or self._root()._input_name
        if not base:
            raise OutputError(
                f"cannot name the output of {self.name}: the input has no file name;"
                " set output_file"
            )
        suffix = self.suffix or self._params["suffix"].default or self.class_alias or self.name
        directory = self._search("output_dir") or ""
        return Path(os.path.expandvars(os.path.expanduser(directory))) / make_output_name(
            base, suffix
        )

    def planned_outputs(self) -> list[Path]:
        """Return the paths `run` would write (pipelines add their steps' outputs).

        Returns
        -------
        list of pathlib.Path
            Output paths.
        """
        return [self.output_path()] if self.saves_result() else []

    def check_outputs(self, input: Any = None) -> None:  # noqa: A002
        """Check, before any work, that every planned output can be written.

        Creates missing output directories, checks they accept a new file and that no
        output would replace the input file.

        Parameters
        ----------
        input : object, optional
            The input; if a path, no output may resolve to it.

        Raises
        ------
        OutputError
            If a directory cannot be created or written, or an output is the input.
        """
        input_path = Path(input).resolve() if isinstance(input, str | os.PathLike) else None
        checked: set[Path] = set()
        for path in self.planned_outputs():
            if input_path is not None and path.resolve() == input_path:
                raise OutputError(f"output {path} would overwrite the input file")
            if path.is_dir():
                raise OutputError(f"output {path} is a directory")
            directory = path.parent
            if directory in checked:
                continue
            checked.add(directory)
            _check_writable_dir(directory)

    def save(self, model: Any, path: Path) -> None:
        """Save the result with the model's own ``save`` (temp file + rename).

        Parameters
        ----------
        model : object
            Result with a ``save(path)`` method.
        path : pathlib.Path
            Destination.

        Raises
        ------
        OutputError
            If writing fails.
        """
        if not hasattr(model, "save"):
            raise OutputError(f"cannot save the result of {self.name}: {type(model).__name__}")
        try:
            # the arrays made for writing (the schema's float16 casts) are filled once
            # and dropped: ordinary pages, not huge pages (`ordinary_pages`)
            with ordinary_pages():
                model.save(str(path))
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self.log.info("Saved %s", path)


#: Input of the last top-level `Step.run` (named by the runner when interrupted).
_ACTIVE_INPUT: list[str | None] = [None]


def active_input() -> str | None:
    """Return the input name of the most recent top-level `Step.run`, if any.

    Returns
    -------
    str or None
        The path or model file name given to the outermost step.
    """
    return _ACTIVE_INPUT[0]


def _name_of(obj: Any) -> str | None:
    if isinstance(obj, list | tuple):  # several inputs: named after the first
        return _name_of(obj[0]) if obj else None
    if isinstance(obj, str | os.PathLike):
        return os.fspath(obj)
    try:
        name = obj.meta.filename
    except AttributeError:
        return None
    return str(name) if name else None


def _set_meta(step: Step, model: Any, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    try:
        node = model.meta
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        step.log.warning("Cannot record meta.%s: %s", dotted, exc)


def _set_meta_item(step: Step, model: Any, dotted: str, key: str, value: Any) -> None:
    """Set ``meta.<dotted>[key] = value``, creating the mapping if it is missing."""
    *parents, leaf = dotted.split(".")
    try:
        node = model.meta
        for part in parents:
            node = getattr(node, part)
        try:
            mapping = getattr(node, leaf)
        except (AttributeError, KeyError):
            setattr(node, leaf, {})
            mapping = getattr(node, leaf)
        mapping[key] = value
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        step.log.warning("Cannot record meta.%s.%s: %s", dotted, key, exc)


def _append_cal_log(step: Step, model: Any, line: str) -> None:
    """Append ``line`` to ``meta.cal_logs`` if the model has it (L2 images)."""
    try:
        logs = model.meta.cal_logs
    except (AttributeError, KeyError):
        return
    try:
        if line not in list(logs):
            logs.append(line)
    except (AttributeError, TypeError) as exc:
        step.log.warning("Cannot record meta.cal_logs: %s", exc)


def _check_writable_dir(directory: Path) -> None:
    from romancal_lite.datamodels._files import created_directories

    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create output directory {directory}: {exc.strerror or exc}"
        raise OutputError(msg) from exc
    finally:
        # removed again if the run fails (inside deferred_outputs)
        created_directories([d for d in missing if d.is_dir()])
    with signals_held():  # an interruption never leaves the probe behind
        try:
            fd, probe = tempfile.mkstemp(dir=directory, prefix=".romancal_lite_probe_")
        except OSError as exc:
            msg = f"output directory {directory} is not writable: {exc.strerror or exc}"
            raise OutputError(msg) from exc
        os.close(fd)
        os.unlink(probe)


Step._params = {key: value for key, value in vars(Step).items() if isinstance(value, Param)}

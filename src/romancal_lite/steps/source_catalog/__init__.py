"""Source detection and photometry of a level 2 image (``source_catalog``)."""

from .catalog import CatalogResult, make_source_catalog, write_parquet
from .source_catalog_step import SourceCatalogStep

__all__ = ["CatalogResult", "SourceCatalogStep", "make_source_catalog", "write_parquet"]

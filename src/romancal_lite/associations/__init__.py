"""Associations: romancal's ``_asn.json`` files (a product and the exposures it is made of).

An association is a JSON object with a ``products`` list; each product has a ``name``
and ``members``, each member an ``expname`` (a file, relative to the association's
directory) and an ``exptype`` (``"science"``...), optionally a ``group_id`` (the
exposure it belongs to, shared by its detectors) and a ``tweakreg_catalog``. As
romancal's model library, the first product is the one processed. `asn_from_list`
makes one from a list of files (``romancal-lite asn``).
"""

from ._asn import Association, Member, is_association, load_asn
from ._from_list import asn_from_list, catalog_name, write_asn

__all__ = [
    "Association",
    "Member",
    "asn_from_list",
    "catalog_name",
    "is_association",
    "load_asn",
    "write_asn",
]

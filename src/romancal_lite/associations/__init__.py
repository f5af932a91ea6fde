"""Associations: romancal's ``_asn.json`` files (a product and the exposures it is made of).

An association is a JSON object with a ``products`` list; each product has a ``name``
and ``members``, each member an ``expname`` (a file, relative to the association's
directory) and an ``exptype`` (``"science"``...), optionally a ``group_id`` (the
exposure it belongs to, shared by its detectors) and a ``tweakreg_catalog``. As
romancal's model library, the first product is the one processed.
"""

from ._asn import Association, Member, is_association, load_asn

__all__ = ["Association", "Member", "is_association", "load_asn"]

"""ARINC 825 29-bit identifiers for the CANaerospace parameters the cabin server reads.

ARINC 825 ("General Standardization of CAN Bus Protocol for Airborne Use") sends every parameter in
a CAN 2.0B extended frame whose 29-bit identifier says who sends what. One-to-many (broadcast)
identifiers, as used on the Normal Operation Channel, are laid out as follows (bit 28 first):

======= ===== ======================================================================
bits    width field
======= ===== ======================================================================
28-26   3     LCC, logical communication channel: 0 EEC (exception event), 2 NOC (normal
              operation), 3 DMC, 4 NSC (node service), 5 UDC (user defined), 6 TMC (test
              and maintenance), 7 FMC (CAN base frame migration)
25-19   7     source FID, the function code identifier of the sender (4 flight state,
              34 landing gear, ...)
18      1     FSB, functional status bit (one-to-many; SMT on peer-to-peer channels)
17      1     LCL, local bit (the message stays on this bus segment)
16      1     PVT, private bit (a user-defined data object code)
15-2    14    DOC, data object code (the parameter)
1-0     2     RCI, redundancy channel identifier: 0-3 = channel A-D
======= ===== ======================================================================

Sources used (the standard itself is not public):

- ``JuliaCzarnowska/ARINC_825`` on GitHub, ``socket.cpp`` (``composeA825Identifier`` /
  ``decodeA825Identifier``: LCC << 26, source FID << 19, FSB << 18, LCL << 17, PVT << 16,
  DOC << 2, RCI in bits 0-1) and ``a825.h`` (LCC codes EEC 0, NOC 2, DMC 3, NSC 4, UDC 5, TMC 6,
  FMC 7; FIDs flight state 4, landing gear 34; RCI A-D 0-3);
- Hargrave Technologies' ARINC 825 guide (docs.hargravetechnologies.com, "ARINC Advanced Guide"):
  broadcast data on the NOC uses one-to-many identifiers with a 14-bit DOC and a 7-bit FID.

The data object codes are the CANaerospace normal-operation identifiers (ARINC 825 took its
normal-operation DOCs over from CANaerospace), so the ARINC 825 database
(``arinc825.dbc``) has the same messages, signals and CANaerospace-like payload (node id, data type,
service code, message code, value) as ``canaerospace.dbc``, with identifiers made by
:func:`encode_id` with LCC NOC, FSB/LCL/PVT 0 and RCI A. A receiver looks a frame up by
:func:`canonical_id` (RCI, FSB, LCL and PVT cleared), so that redundant channels (RCI B-D) are
the same parameter from another source.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

import cantools
from cantools.database.can import Database

__all__ = ["A825_DBC", "FID", "LCC", "RCI_LETTERS", "UNKNOWN_A825_IDS", "A825Id", "canonical_id", "decode_id",
           "encode_id", "load_arinc825", "message_id", "MESSAGE_FID"]

A825_DBC = "arinc825.dbc"
#: Logical communication channels (3 bits).
LCC = {"EEC": 0, "NOC": 2, "DMC": 3, "NSC": 4, "UDC": 5, "TMC": 6, "FMC": 7}
#: Function code identifiers used here (7 bits).
FID = {"MULTICAST": 0, "FLIGHT_STATE": 4, "LANDING_GEAR": 34}
#: The sending function of each message of ``canaerospace.dbc``.
MESSAGE_FID = {"LGCIU_DISCRETES": FID["LANDING_GEAR"]}
RCI_LETTERS = "ABCD"
_FIELDS = (("lcc", 26, 3), ("fid", 19, 7), ("fsb", 18, 1), ("lcl", 17, 1), ("pvt", 16, 1),
           ("doc", 2, 14), ("rci", 0, 2))
#: Bits cleared by :func:`canonical_id`: RCI, FSB, LCL, PVT.
_VARYING = (0x3 << 0) | (1 << 18) | (1 << 17) | (1 << 16)


@dataclass(frozen=True)
class A825Id:
    """The fields of a one-to-many ARINC 825 identifier (widths in the module doc)."""

    lcc: int
    fid: int
    doc: int
    rci: int = 0
    fsb: int = 0
    lcl: int = 0
    pvt: int = 0


def encode_id(ident: A825Id) -> int:
    """The 29-bit CAN identifier of ``ident``; ValueError if a field does not fit its width."""
    out = 0
    for name, shift, width in _FIELDS:
        v = getattr(ident, name)
        if not 0 <= v < (1 << width):
            raise ValueError(f"ARINC 825 {name} {v} does not fit in {width} bits")
        out |= v << shift
    return out


def decode_id(can_id: int) -> A825Id:
    """The fields of a 29-bit identifier; ValueError if it has more than 29 bits or is negative."""
    if not 0 <= can_id < (1 << 29):
        raise ValueError(f"{can_id:#x} is not a 29-bit CAN identifier")
    return A825Id(**{name: (can_id >> shift) & ((1 << width) - 1)
                     for name, shift, width in _FIELDS})


def canonical_id(can_id: int) -> int:
    """``can_id`` with RCI, FSB, LCL and PVT cleared: the identifier the database defines."""
    return can_id & ~_VARYING


def message_id(name: str, doc: int) -> int:
    """The identifier of CANaerospace message ``name`` (id ``doc``) on the NOC, RCI A."""
    return encode_id(A825Id(LCC["NOC"], MESSAGE_FID.get(name, FID["FLIGHT_STATE"]), doc))


#: 29-bit identifiers the database does not define (sent by the simulator's unknown-id fault): other
#: DOCs on the NOC, another function's, a node service and a test and maintenance message.
UNKNOWN_A825_IDS = (
    encode_id(A825Id(LCC["NOC"], FID["FLIGHT_STATE"], 999)),
    encode_id(A825Id(LCC["NOC"], 11, 317)),
    encode_id(A825Id(LCC["NSC"], FID["FLIGHT_STATE"], 300, rci=1)),
    encode_id(A825Id(LCC["TMC"], FID["LANDING_GEAR"], 200)),
    encode_id(A825Id(LCC["EEC"], 0, 1)),
)


def load_arinc825() -> Database:
    """The ARINC 825 database shipped in this package (raises cantools' ParseError if broken)."""
    text = importlib.resources.files("firmware_bridge").joinpath(A825_DBC).read_text()
    db = cantools.database.load_string(text, database_format="dbc")
    assert isinstance(db, Database)
    return db

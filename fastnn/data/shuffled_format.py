"""The pre-shuffled training file: one header, then `epochs` permutations of the training set.

    offset 0   magic b"FNNSHUF\\0", then little-endian: version u32, rows u32, cols u32,
               label_bytes u32, records_per_epoch u64, epochs u32, block_records u32, seed i64,
               header_crc u32 (crc32 of everything before it, and of the checksum table)
    offset 64  checksum table: per epoch, crc32 of each block of `block_records` records, then
               the crc32 of the whole epoch
    data_offset (table end rounded up to 4096): epoch 0 record 0, record 1, ... epoch 1, ...
    record     rows * cols pixel bytes, then label_bytes of label (little-endian)

Block checksums let a reader that starts mid-epoch (resume) or reads one shard still verify
every byte it uses.
"""
import struct
import zlib

import numpy as np

MAGIC = b"FNNSHUF\0"
VERSION = 1
_FIELDS = struct.Struct("<8sIIIIQIIq")   # up to seed
_HEADER_BYTES = 64
BLOCK_RECORDS = 2048
MAX_EPOCHS = 100_000
MAX_RECORDS = 10**10


class ShuffledFileError(ValueError):
    """A shuffled file that is not one, or is truncated or corrupt (names the file and where)."""


class Layout:
    """The geometry of a shuffled file (what its header says)."""

    def __init__(self, rows, cols, label_bytes, records_per_epoch, epochs, seed,
                 block_records=BLOCK_RECORDS):
        self.rows, self.cols, self.label_bytes = rows, cols, label_bytes
        self.records_per_epoch, self.epochs, self.seed = records_per_epoch, epochs, seed
        self.block_records = block_records
        self.pixels = rows * cols
        self.record_bytes = self.pixels + label_bytes
        self.blocks_per_epoch = -(-records_per_epoch // block_records)
        self.table_entries = epochs * (self.blocks_per_epoch + 1)
        self.data_offset = -(-(_HEADER_BYTES + 4 * self.table_entries) // 4096) * 4096
        self.epoch_bytes = records_per_epoch * self.record_bytes
        self.file_bytes = self.data_offset + epochs * self.epoch_bytes

    def record_offset(self, epoch, record):
        return self.data_offset + epoch * self.epoch_bytes + record * self.record_bytes

    def header_bytes(self, table):
        """The header and checksum table, padded to data_offset. `table` (epochs, blocks + 1)."""
        fields = _FIELDS.pack(MAGIC, VERSION, self.rows, self.cols, self.label_bytes,
                              self.records_per_epoch, self.epochs, self.block_records, self.seed)
        table_bytes = np.asarray(table, "<u4").tobytes()
        crc = zlib.crc32(table_bytes, zlib.crc32(fields))
        head = fields + struct.pack("<I", crc)
        return (head + b"\0" * (_HEADER_BYTES - len(head)) + table_bytes).ljust(self.data_offset, b"\0")


def read_header(f, path, file_size):
    """(Layout, checksum table (epochs, blocks + 1) uint32) from an open binary file."""
    head = f.read(_HEADER_BYTES)
    if len(head) < _HEADER_BYTES:
        raise ShuffledFileError(f"{path}: truncated header ({len(head)} of {_HEADER_BYTES} bytes at byte 0)")
    magic, version, rows, cols, label_bytes, records, epochs, block, seed = _FIELDS.unpack_from(head)
    if magic != MAGIC:
        raise ShuffledFileError(f"{path}: not a fastnn shuffled file (magic {magic!r} at byte 0)")
    if version != VERSION:
        raise ShuffledFileError(f"{path}: format version {version} at byte 8; this fastnn reads {VERSION}")
    if not (0 < rows * cols <= 2**24 and label_bytes in (1, 2, 4, 8) and 0 < records <= MAX_RECORDS
            and 0 < epochs <= MAX_EPOCHS and 0 < block <= 2**20):
        raise ShuffledFileError(f"{path}: implausible header at byte 12: rows {rows}, cols {cols}, "
                                f"label bytes {label_bytes}, records {records}, epochs {epochs}, block {block}")
    layout = Layout(rows, cols, label_bytes, records, epochs, seed, block)
    # Size check before reading the table: a header claiming 10^12 records is refused here.
    if file_size != layout.file_bytes:
        kind = "truncated" if file_size < layout.file_bytes else "has trailing bytes"
        raise ShuffledFileError(f"{path}: {kind}: header says {layout.file_bytes} bytes, file has {file_size}")
    table_bytes = f.read(4 * layout.table_entries)
    (crc,) = struct.unpack_from("<I", head, _FIELDS.size)
    if len(table_bytes) != 4 * layout.table_entries or \
            zlib.crc32(table_bytes, zlib.crc32(head[:_FIELDS.size])) != crc:
        raise ShuffledFileError(f"{path}: header checksum mismatch (bytes 0-{layout.data_offset})")
    table = np.frombuffer(table_bytes, "<u4").reshape(epochs, layout.blocks_per_epoch + 1)
    return layout, table

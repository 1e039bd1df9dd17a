"""fastnn.data: IDX files, the external shuffler, and fixed-buffer streaming readers.

Pure Python + numpy; knows nothing about models. The API (details in each module's docstring):

idx.py        IdxError(ValueError)                      messages name the file and byte offset
              read_idx(path) -> ndarray                 raw or gzip (by magic bytes), validated
              IdxReader(path)                           context manager: .shape .dtype len()
                  .read(start, count, out=None)         records in chunks; gzip streams forward
                  .iter_chunks(chunk_records)           consecutive chunks in one reused buffer
              write_idx(path, array, compress=None)     atomic; gzip if compress or path *.gz
              read_labeled(images, labels, num_classes=10) -> (images, labels int64)
              mnist_files(folder, prefix="") -> {train_images, train_labels, test_images,
                                                 test_labels: path}
shuffle.py    write_shuffled(images_path, labels_path, out_path, epochs, seed=0,
                             memory_limit=64 * 2**20, temp_dir=None) -> Layout
shuffled_format.py  the file format; ShuffledFileError(ValueError)
stream.py     ShuffledStream(path, batch_size, start=0, shard=(0, 1), layout="flat",
                             drop_last=False)
                  for epoch in stream.remaining_epochs():
                      for x, y in stream.iter_epoch(epoch): ...   # reused buffers
                  .position (epoch, record), .position_index, .epochs, .records_per_epoch,
                  .batches_per_epoch, close() / with
              IdxBatches(images_path, labels_path, batch_size=1000, layout="flat",
                         num_classes=10)              iterable of (x, y) for evaluation
"""
from .idx import IdxError, IdxReader, mnist_files, read_idx, read_labeled, write_idx
from .shuffle import write_shuffled
from .shuffled_format import ShuffledFileError
from .stream import IdxBatches, ShuffledStream

__all__ = ["IdxError", "IdxReader", "read_idx", "read_labeled", "write_idx", "mnist_files",
           "write_shuffled", "ShuffledFileError", "ShuffledStream", "IdxBatches"]

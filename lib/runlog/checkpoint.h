// Atomic checkpoints: RUN/ckpt/state.h5, the latest complete training state.
//
// Layout of state.h5 (HDF5, default format, readable by h5py):
//   /            attributes schema = "scalinglab.ckpt/2", ints_crc32, strings_crc32 (int64)
//   /arrays/NAME float32 [n] contiguous; NAME is e.g. an HF parameter name
//                ("model.layers.0.self_attn.q_proj.weight") or its AdamW moment ("adam_m.<name>");
//                attribute crc32 (int64): CRC-32 of its little-endian float32 bytes
//   /ints        group whose int64 scalar attributes are the named integers (step, tokens, ...)
//   /strings     group whose UTF-8 string attributes are the named strings (config, spec, ...)
// Names must be non-empty and contain no '/'. ints_crc32 / strings_crc32 cover the names and
// values of /ints and /strings (checkpoint.cc, crc_of). read_checkpoint() verifies every checksum
// and refuses a mismatch in one line naming the tensor, so a zeroed or bit-flipped checkpoint is
// an error, never a run that trains on (or "diverges" from) corrupt weights. Files of schema
// "scalinglab.ckpt/1" (before checksums) still load, unverified.
//
// write_checkpoint() builds the file in memory and writes DIR/state.h5.tmp with space reserved
// first, fsyncs it, renames it over DIR/state.h5 and fsyncs DIR, so a crash at any point leaves
// the previous complete checkpoint (a stale state.h5.tmp is ignored by readers and replaced by
// the next write). A full disk, a quota or a file-size limit throws one line and removes the
// temporary file; the previous checkpoint stays intact.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sl {

struct Checkpoint {
  std::map<std::string, std::vector<float>> arrays;
  std::map<std::string, int64_t> ints;
  std::map<std::string, std::string> strings;
  std::string source;  // the file it was read from ("" if built in memory); used in errors

  // Validating accessors for resume: each throws sl::Error naming the file and the entry, e.g.
  // "checkpoint RUN/ckpt/state.h5: array 'x' has 10 elements, expected 12" or "... no array 'x'".
  const std::vector<float>& array(const std::string& name, size_t expected_size) const;
  int64_t int_value(const std::string& name) const;
  const std::string& string_value(const std::string& name) const;
};

// Path of the checkpoint file inside `dir`.
std::string checkpoint_path(const std::string& dir);
void write_checkpoint(const std::string& dir, const Checkpoint& c);
Checkpoint read_checkpoint(const std::string& dir);
bool checkpoint_exists(const std::string& dir);  // DIR/state.h5 exists (tmp files don't count)
// Whether write_checkpoint may run on one thread while another uses HDF5 (a run log): true when
// the HDF5 library was built thread-safe (one lock around every call), as Debian's is.
bool checkpoint_write_may_overlap();

}  // namespace sl

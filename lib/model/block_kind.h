// BlockKind: what a letter of ModelSpec::pattern names (docs/DESIGN.md "Model blocks"). The
// letters live in one table, the block registry (model/blocks/block.cc): every test of a layer's
// kind goes through these functions, never through a character compare.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sl {

enum class BlockKind : uint8_t {
  attention,  // 'A': OLMo 3 attention block (model/blocks/attention.h)
  gdn,        // 'G': OLMo Hybrid Gated DeltaNet block (model/blocks/gdn.h)
};

// The pattern letter of a kind.
char block_letter(BlockKind kind);
// The kind of pattern[i]; an unknown letter fails with one line naming the pattern and the letter.
BlockKind block_kind(const std::string& pattern, size_t i);
// Every letter of a pattern parsed (fails as block_kind on the first unknown letter).
std::vector<BlockKind> block_kinds(const std::string& pattern);
// How many letters of the pattern name `kind` (unknown letters count for no kind).
int64_t count_blocks(const std::string& pattern, BlockKind kind);

}  // namespace sl

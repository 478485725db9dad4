// tilecodec/warp/warp_tile_decoder.cuh: decode one tile with one warp, inside your own kernel.
//
//   using Decoder = tilecodec::warp_tile_decoder<tilecodec::int8_codec>;
//   __shared__ Decoder::table_type table;                     // once per block, shared by its warps
//   __shared__ Decoder::TempStorage temp[kWarps];             // per warp; may be unioned with yours
//   tilecodec::load_decode_table(table, tensor, tilecodec::block_group<kThreads>{});
//   Decoder dec(temp[warp], table);
//
//   // (a) the whole tile as values, row-major, into shared or global memory
//   status s = dec.decode(tensor, tile, out, tilecodec::dtype::f32, ld);
//
//   // (b) symbols straight into registers, 32 * Items at a time, warp-striped
//   s = dec.begin(tensor, tile);
//   while (dec.remaining()) {
//     std::uint16_t sym[8];
//     std::uint32_t first = dec.next(sym);   // item k of lane t is symbol first + k * 32 + t
//     ...                                     //   (k * Lanes + t for Lanes < 32; past the end: 0)
//   }
//   s = dec.end();                             // checks the stream like the host decoder
//
//   // (c) lane-stream codecs: W warps (W divides lanes / 32) decode one tile together, each with
//   //     its own TempStorage; warp w writes its own lanes' symbols
//   s = dec.decode_share<W>(tensor, tile, out, tilecodec::dtype::f32, ld, /*team_warp=*/w);
//
// Every coder works: coder::rans (shared word stream, coding 1), coder::rans_lanes (one stream per
// lane, coding 3; its TempStorage holds 64 or 128 bytes of ring per lane), coder::fixed (coding 2;
// no table, no TempStorage), coder::fixed_marked (coding 4; likewise) and coder::raw.
// All 32 lanes of the warp must call every member. The decoder's template codec fixes the
// tile shape, quantization and lanes, and bounds the table precision (the encoder may record one
// bit less than the policy's); a tensor with other parameters gives status::unsupported. Tensors
// of a rANS codec whose encoder chose to store the plane (plane_coding::stored) decode too.
// Tiles on the right and bottom edges (smaller boxes) and single-tile tensors are handled.
// Reuse of TempStorage after decode()/end(): the decoder leaves it idle (a __syncwarp() is
// inside); before giving it to other code, __syncwarp() is enough.
#pragma once

#include <cstdint>

#include "../block/decode_table.cuh"
#include "../config.hpp"
#include "../device/tensor_ref.hpp"
#include "../policy/codec.hpp"
#include "../status.hpp"
#include "tile_writer.cuh"
#include "warp_intrinsics.cuh"
#include "warp_rans_engine.cuh"
#include "warp_rans_lanes_engine.cuh"
#include "warp_fixed_marked_decode.cuh"
#include "warp_window_decode.cuh"

namespace tilecodec {

template <class Codec>
class warp_tile_decoder {
  static_assert(detail::dependent_false<Codec>,
                "warp_tile_decoder needs a tilecodec::codec<Tile, Quant, Coder>");
};

namespace detail {
// Largest alphabet a quantization can have (16-bit lossless: 512; fp32 lossless: 256).
template <class Quant>
inline constexpr int max_alphabet_of = Quant::id == quant::kind::int4_group ? 16
                                       : Quant::id == quant::kind::lossless ? 512 : 256;

// Shared checks of a decoder's compile-time codec against a tensor's header.
template <class Tile, class Quant>
TILECODEC_DEV bool same_tile_and_quant(const device::tensor_ref& t) {
  static_assert(Tile::order == symbol_order::row_major,
                "the tile decoders write row-major tiles; other symbol orders belong to the fused kernels");
  // Rank 0/1 tensors use 1 x (Rows * Cols) tiles.
  return device::device_decodable(t) && t.quant == Quant::id && t.group_size == Quant::group_size &&
         ((t.layout.tile_rows == Tile::rows && t.layout.tile_cols == Tile::cols) ||
          (t.layout.tile_rows == 1 && t.layout.tile_cols == Tile::rows * Tile::cols));
}
}  // namespace detail

// ---- rANS ------------------------------------------------------------------------------------------
namespace detail {
// What differs between the two rANS stream layouts: the engine, its shared memory and how a tile
// starts. Everything else of the warp decoder is common (rans_warp_tile_decoder below).
template <int Lanes>
struct shared_stream_layout {  // coding 1: one word stream, lanes take words in lane order
  static constexpr plane_coding coding = plane_coding::rans;
  static constexpr int K = Lanes > 32 ? Lanes / 32 : 1;
  static constexpr bool Partial = Lanes < 32;
  using engine = rans_warp_engine<K, Partial, 0>;
  using storage = warp_window_storage;
  template <int SymBytes>
  static TILECODEC_DEV status to_writer(storage& st, const std::uint32_t* table, std::uint32_t p, std::uint32_t sb,
                                        const device::tile_ref& tr, tile_writer& writer) {
    return rans_tile_to_writer<K, Partial, 0, SymBytes>(st, table, p, sb, Lanes, tr, writer);
  }
  static TILECODEC_DEV status begin(engine& eng, storage& st, const std::uint32_t* table, std::uint32_t p,
                                    std::uint32_t sb, const device::tile_ref& tr) {
    return eng.begin(st.ring, table, p, sb, tr.bytes, tr.byte_count, tr.size(), Lanes);
  }
};

template <int Lanes>
struct lane_streams_layout {  // coding 3: one word stream per lane; a 64- or 128-byte ring per lane
  static constexpr plane_coding coding = plane_coding::rans_lanes;
  static constexpr int K = Lanes / 32;
  static constexpr bool Partial = false;
  using engine = rans_lanes_warp_engine<K, 0>;
  using storage = warp_lanes_storage<Lanes>;
  // Warp `team_warp` of Warps warps that share the tile (Warps divides Lanes / 32).
  template <int SymBytes, int Warps = 1>
  static TILECODEC_DEV status to_writer(storage& st, const std::uint32_t* table, std::uint32_t p, std::uint32_t sb,
                                        const device::tile_ref& tr, tile_writer& writer, std::uint32_t team_warp = 0) {
    static_assert(K % Warps == 0, "at least one chain per thread");
    return rans_lanes_tile_to_writer<K / Warps, Warps, 0, SymBytes>(st, team_warp, table, p, sb, tr, writer);
  }
  static TILECODEC_DEV status begin(engine& eng, storage& st, const std::uint32_t* table, std::uint32_t p,
                                    std::uint32_t sb, const device::tile_ref& tr) {
    return eng.begin(st.rings.data, table, p, sb, tr.bytes, tr.byte_count, tr.size());
  }
};

// The warp tile decoder of both rANS codings; Layout is one of the two above.
template <class Tile, class Quant, int ProbBits, int Lanes, class Layout>
class rans_warp_tile_decoder {
  static constexpr int K = Layout::K;
  static constexpr bool Partial = Layout::Partial;
  using engine = typename Layout::engine;

 public:
  using table_type = decode_table<ProbBits, max_alphabet_of<Quant>>;
  // Symbols per lane per fast group: next<Items>() takes Items in multiples of this.
  static constexpr int items_per_group = 4;
  static constexpr std::uint32_t lane_stride = Partial ? std::uint32_t(Lanes) : 32u;

  struct TempStorage {
    typename Layout::storage window;
  };

  TILECODEC_DEV rans_warp_tile_decoder(TempStorage& temp, const table_type& table) : temp_(temp), table_(table) {}

  // Is this tensor one this decoder can decode? (policy, lanes, table precision)
  [[nodiscard]] TILECODEC_DEV static bool accepts(const device::tensor_ref& t) {
    return same_tile_and_quant<Tile, Quant>(t) &&
           t.alphabet <= table_type::max_alphabet &&
           (t.coding == plane_coding::stored ||
            (t.coding == Layout::coding && t.lanes == std::uint32_t(Lanes) && t.prob_bits >= 8 &&
             t.prob_bits <= std::uint32_t(ProbBits)));
  }

  // Decodes tile `tile` of `tensor` as values of out_type (see device::can_decode_to) into out:
  // tile element (r, c) goes to out[r * ld + c]. The table must hold this tensor's table.
  TILECODEC_DEV status decode(const device::tensor_ref& tensor, std::uint64_t tile, void* out, dtype out_type,
                              std::uint64_t ld) {
    return decode_share<1>(tensor, tile, out, out_type, ld, 0);
  }

  // The same by Warps warps together (lane streams only; Warps divides Lanes / 32): each calls it
  // with its own TempStorage and team_warp = 0 .. Warps - 1, decodes its lanes' symbols and writes
  // them; the tile is complete when all have returned (each returns the status of its lanes).
  template <int Warps>
  TILECODEC_DEV status decode_share(const device::tensor_ref& tensor, std::uint64_t tile, void* out, dtype out_type,
                                    std::uint64_t ld, std::uint32_t team_warp) {
    static_assert(Warps == 1 || Layout::coding == plane_coding::rans_lanes, "only lane-stream tiles can be shared");
    if (!accepts(tensor) || !device::can_decode_to(tensor, out_type)) return status::unsupported;
    device::tile_ref tr;
    const status s = tensor.output_tile(tile, out, ld, tr);
    if (s != status::success) return s;
    tile_writer writer;
    writer.set_tensor(tensor, out_type);
    if (tensor.coding != Layout::coding) {  // stored: the first warp writes it all
      if (team_warp != 0) return status::success;
      writer.begin_tile(tr, out, ld);
      return stored_tile_to_writer(tr, tensor.alphabet, writer);
    }
    if (table_.state != static_cast<std::uint32_t>(status::success)) return static_cast<status>(table_.state);
    if constexpr (Warps == 1) writer.begin_tile(tr, out, ld);
    else writer.begin_tile_at(tr, out, ld, lanes_window_first(std::uint32_t(Lanes), Warps, team_warp), Warps * tile_writer::window);
    const std::uint32_t p = tensor.prob_bits, sb = symbol_bits(tensor.alphabet);
    if constexpr (max_alphabet_of<Quant> == 512) {
      if (sb == 9) return to_writer<2, Warps>(tr, writer, p, sb, team_warp);
    }
    return to_writer<1, Warps>(tr, writer, p, sb, team_warp);
  }

  // ---- register interface ----------------------------------------------------------------------
 private:
  template <int SymBytes, int Warps>
  TILECODEC_DEV status to_writer(const device::tile_ref& tr, tile_writer& writer, std::uint32_t p, std::uint32_t sb,
                                 std::uint32_t team_warp) {
    if constexpr (Warps == 1) return Layout::template to_writer<SymBytes>(temp_.window, table_.entry, p, sb, tr, writer);
    else return Layout::template to_writer<SymBytes, Warps>(temp_.window, table_.entry, p, sb, tr, writer, team_warp);
  }

 public:
  TILECODEC_DEV status begin(const device::tensor_ref& tensor, std::uint64_t tile) {
    n_ = 0;
    pos_ = 0;
    stored_ = nullptr;
    if (!accepts(tensor)) return st_ = status::unsupported;
    device::tile_ref tr;
    st_ = tensor.tile(tile, tr);
    if (st_ != status::success) return st_;
    n_ = tr.size();
    if (tensor.coding != Layout::coding) {
      stored_ = tr.bytes;
      alphabet_ = tensor.alphabet;
      return st_;
    }
    if (table_.state != static_cast<std::uint32_t>(status::success)) return st_ = static_cast<status>(table_.state);
    sym_mask_ = (1u << symbol_bits(tensor.alphabet)) - 1u;
    st_ = Layout::begin(eng_, temp_.window, table_.entry, tensor.prob_bits, symbol_bits(tensor.alphabet), tr);
    running_ = true;
    if (st_ != status::success) n_ = 0;
    return st_;
  }

  // Symbols of the tile not yet returned by next().
  [[nodiscard]] TILECODEC_DEV std::uint32_t remaining() const { return n_ - pos_; }

  // The next 32 * Items (Lanes * Items for Lanes < 32) symbols: item k of lane t is symbol
  // first + k * lane_stride + t of the tile (warp-striped), where `first` is returned. Items past
  // the tile's end are 0.
  template <int Items>
  TILECODEC_DEV std::uint32_t next(std::uint16_t (&sym)[Items]) {
    static_assert(Items % items_per_group == 0, "next<Items>(): Items must be a multiple of 4");
    const std::uint32_t first = pos_;
#pragma unroll
    for (int k = 0; k < Items; ++k) sym[k] = 0;
    if (stored_ != nullptr) {
      const std::uint32_t t = lane_id();
#pragma unroll
      for (int k = 0; k < Items; ++k) {
        const std::uint32_t i = first + std::uint32_t(k) * lane_stride + t;
        if (i < n_ && (!Partial || t < lane_stride)) sym[k] = static_cast<std::uint16_t>(stored_symbol(stored_, alphabet_, i));
      }
    } else if (st_ == status::success) {
      constexpr int per_group = items_per_group;  // items filled by one group
#pragma unroll
      for (int g = 0; g < Items / per_group; ++g) {
        if (eng_.decoded() >= n_) break;
        eng_.advance_ring();
        if (eng_.fast_ok(1)) {
          eng_.group([&](std::uint32_t, std::uint32_t item, std::uint32_t e) {
            sym[g * per_group + item] = static_cast<std::uint16_t>(e & sym_mask_);
          });
        } else {
          // Checked steps: a step fills K items.
#pragma unroll
          for (int s = 0; s < per_group / K; ++s) {
            if (eng_.decoded() >= n_) break;
            if (s > 0) eng_.advance_ring();
            if (!eng_.step([&](std::uint32_t, std::uint32_t k, std::uint32_t e) {
                  sym[g * per_group + s * K + k] = static_cast<std::uint16_t>(e & sym_mask_);
                })) {
              st_ = status::corrupt_payload;
              break;
            }
          }
          if (st_ != status::success) break;
        }
      }
    }
    const std::uint32_t step = std::uint32_t(Items) * lane_stride;
    pos_ = n_ - first < step ? n_ : first + step;
    if (st_ != status::success) pos_ = n_;
    return first;
  }

  // Ends the tile: waits for the decoder's copies and checks the stream (unread words, final
  // states) like the host decoder. Call it even after an error.
  TILECODEC_DEV status end() {
    if (running_) {
      running_ = false;
      const status s = eng_.finish();
      if (st_ == status::success) st_ = s;
    }
    return st_;
  }

 private:
  TempStorage& temp_;
  const table_type& table_;
  engine eng_;
  const std::uint8_t* stored_ = nullptr;
  std::uint32_t alphabet_ = 256;
  std::uint32_t sym_mask_ = 0xff;
  std::uint32_t n_ = 0, pos_ = 0;
  bool running_ = false;
  status st_ = status::success;
};
}  // namespace detail

template <class Tile, class Quant, int ProbBits, int Lanes>
class warp_tile_decoder<codec<Tile, Quant, coder::rans<ProbBits, Lanes>>>
    : public detail::rans_warp_tile_decoder<Tile, Quant, ProbBits, Lanes, detail::shared_stream_layout<Lanes>> {
 public:
  using codec_type = codec<Tile, Quant, coder::rans<ProbBits, Lanes>>;
  using detail::rans_warp_tile_decoder<Tile, Quant, ProbBits, Lanes, detail::shared_stream_layout<Lanes>>::rans_warp_tile_decoder;
};

// ---- rANS with lane streams (coding 3): the same interface; TempStorage holds the lane rings --------
template <class Tile, class Quant, int ProbBits, int Lanes>
class warp_tile_decoder<codec<Tile, Quant, coder::rans_lanes<ProbBits, Lanes>>>
    : public detail::rans_warp_tile_decoder<Tile, Quant, ProbBits, Lanes, detail::lane_streams_layout<Lanes>> {
 public:
  using codec_type = codec<Tile, Quant, coder::rans_lanes<ProbBits, Lanes>>;
  using detail::rans_warp_tile_decoder<Tile, Quant, ProbBits, Lanes, detail::lane_streams_layout<Lanes>>::rans_warp_tile_decoder;
};

// ---- fixed-length codes with escapes (coding 2) ------------------------------------------------------
// No table and no shared memory: every 512-symbol window decodes alone (warp/warp_fixed_decode.cuh),
// so block_tile_decoder::decode_tile lets all its warps share a tile. The register interface reads
// each symbol's code at random (coder/fixed.hpp) and looks escaped positions up in their row's
// entries, which begin() has checked.
template <class Tile, class Quant>
class warp_tile_decoder<codec<Tile, Quant, coder::fixed>> {
 public:
  using codec_type = codec<Tile, Quant, coder::fixed>;
  using table_type = detail::no_table;  // nothing to load
  static constexpr int items_per_group = 1;
  static constexpr std::uint32_t lane_stride = 32;
  struct TempStorage {};

  TILECODEC_DEV explicit warp_tile_decoder(TempStorage&) {}
  TILECODEC_DEV warp_tile_decoder(TempStorage&, const table_type&) {}

  [[nodiscard]] TILECODEC_DEV static bool accepts(const device::tensor_ref& t) {
    return detail::same_tile_and_quant<Tile, Quant>(t) &&
           (t.coding == plane_coding::stored || t.coding == plane_coding::fixed);
  }

  // Tile `tile` as values of out_type into out (tile element (r, c) at out[r * ld + c]); with
  // first_window / window_stride, only this warp's windows (the rest by other warps).
  TILECODEC_DEV status decode(const device::tensor_ref& tensor, std::uint64_t tile, void* out, dtype out_type,
                              std::uint64_t ld, std::uint32_t first_window = 0, std::uint32_t window_stride = 1) {
    if (!accepts(tensor) || !device::can_decode_to(tensor, out_type)) return status::unsupported;
    // window_tile_decode finds the tile and checks out and ld against it.
    return detail::window_tile_decode<plane_coding::fixed>(tensor, tile, out, out_type, ld, first_window, window_stride);
  }

  // Starts a tile and checks all of it (row table, every escape entry) like the host decoder.
  TILECODEC_DEV status begin(const device::tensor_ref& tensor, std::uint64_t tile) {
    n_ = pos_ = 0;
    if (!accepts(tensor)) return st_ = status::unsupported;
    device::tile_ref tr;
    st_ = tensor.tile(tile, tr);
    if (st_ != status::success) return st_;
    bytes_ = tr.bytes;
    alphabet_ = tensor.alphabet;
    stored_ = tensor.coding == plane_coding::stored;
    w_ = tr.box.width;
    code_ = tensor.fixed();
    shape_ = fixed_shape(code_, tr.box.height, w_);
    if (!stored_) st_ = check_tile(tr, tensor.raw_plane() + tr.raw_start);
    if (st_ == status::success) n_ = tr.size();
    return st_;
  }
  [[nodiscard]] TILECODEC_DEV std::uint32_t remaining() const { return n_ - pos_; }

  // The next 32 * Items symbols: item k of lane t is symbol first + 32 k + t (0 past the end).
  template <int Items>
  TILECODEC_DEV std::uint32_t next(std::uint16_t (&sym)[Items]) {
    const std::uint32_t first = pos_, t = detail::lane_id();
#pragma unroll
    for (int k = 0; k < Items; ++k) {
      const std::uint32_t i = first + std::uint32_t(k) * 32u + t;
      sym[k] = i < n_ ? static_cast<std::uint16_t>(stored_ ? stored_symbol(bytes_, alphabet_, i) : symbol(i)) : 0;
    }
    pos_ = n_ - first < std::uint32_t(Items) * 32u ? n_ : first + std::uint32_t(Items) * 32u;
    return first;
  }
  TILECODEC_DEV status end() { return st_; }

 private:
  TILECODEC_DEV std::uint32_t symbol(std::uint32_t i) const {
    const std::uint32_t c = fixed_code_at(bytes_, code_.bits, i);
    if (c != 0 || !code_.has_escapes()) return code_.first + c;
    const std::uint32_t r = i / w_, col = i % w_;  // an escape? its row's entries (checked in begin)
    const std::uint16_t* row_start = reinterpret_cast<const std::uint16_t*>(bytes_ + shape_.code_bytes);
    for (std::uint32_t e = row_start[r]; e < row_start[r + 1]; ++e) {
      std::uint32_t ec, value;
      detail::fixed_entry(bytes_, shape_, e, ec, value);
      if (ec == col) return fixed_escape_symbol(value, alphabet_);
    }
    return code_.first;
  }

  // The whole tile's row table and entries, lanes taking rows t, t + 32, ...
  TILECODEC_DEV status check_tile(const device::tile_ref& tr, const std::uint8_t* raw_tile) const {
    const std::uint32_t h = tr.box.height;
    std::uint32_t escapes = 0;
    bool bad = false;
    if (code_.has_escapes()) {
      const std::uint16_t* row_start = reinterpret_cast<const std::uint16_t*>(bytes_ + shape_.code_bytes);
      escapes = row_start[h];
      bad = row_start[0] != 0;
    }
    if (bad || tr.byte_count != fixed_tile_bytes(shape_, escapes)) return status::corrupt_payload;
    if (code_.has_escapes()) {
      for (std::uint32_t r = detail::lane_id(); r < h && !bad; r += 32) {
        const std::uint16_t* row_start = reinterpret_cast<const std::uint16_t*>(bytes_ + shape_.code_bytes);
        const std::uint32_t e0 = row_start[r], e1 = row_start[r + 1];
        bad = e1 < e0 || e1 > escapes;
        std::uint32_t previous = 0;
        for (std::uint32_t e = e0; e < e1 && !bad; ++e) {
          std::uint32_t col, value;
          detail::fixed_entry(bytes_, shape_, e, col, value);
          const std::uint32_t i = r * w_ + col;
          bad = col >= w_ || (e > e0 && col <= previous) || fixed_escape_symbol(value, alphabet_) >= alphabet_ ||
                fixed_code_at(bytes_, code_.bits, i) != 0 ||
                (alphabet_ == 512 && lossless16_raw(value) != raw7_unpack(raw_tile + raw7_group_bytes * (i / raw7_group), i % raw7_group));
          previous = col;
        }
      }
    }
    return __any_sync(detail::full_warp_mask, bad) ? status::corrupt_payload : status::success;
  }

  const std::uint8_t* bytes_ = nullptr;
  fixed_code code_{};
  fixed_tile_shape shape_{};
  std::uint32_t alphabet_ = 256, w_ = 1;
  std::uint32_t n_ = 0, pos_ = 0;
  bool stored_ = true;
  status st_ = status::success;
};

// ---- fixed-length codes with marked escapes (coding 4) -----------------------------------------------
// No table and no shared memory, and windows that decode alone (warp/warp_fixed_marked_decode.cuh),
// as for coding 2. The register interface reads each symbol's code at random and takes escape
// values in order: a running count of code-0 positions (one ballot per 32 symbols) is the next
// value's index, checked against window_start at every window and against the escape count at
// the end (so next() must go through the whole tile before end() can report it whole).
template <class Tile, class Quant>
class warp_tile_decoder<codec<Tile, Quant, coder::fixed_marked>> {
 public:
  using codec_type = codec<Tile, Quant, coder::fixed_marked>;
  using table_type = detail::no_table;  // nothing to load
  static constexpr int items_per_group = 1;
  static constexpr std::uint32_t lane_stride = 32;
  struct TempStorage {};

  TILECODEC_DEV explicit warp_tile_decoder(TempStorage&) {}
  TILECODEC_DEV warp_tile_decoder(TempStorage&, const table_type&) {}

  [[nodiscard]] TILECODEC_DEV static bool accepts(const device::tensor_ref& t) {
    return detail::same_tile_and_quant<Tile, Quant>(t) &&
           (t.coding == plane_coding::stored || t.coding == plane_coding::fixed_marked);
  }

  // Tile `tile` as values of out_type into out (tile element (r, c) at out[r * ld + c]); with
  // first_window / window_stride, only this warp's windows (the rest by other warps).
  TILECODEC_DEV status decode(const device::tensor_ref& tensor, std::uint64_t tile, void* out, dtype out_type,
                              std::uint64_t ld, std::uint32_t first_window = 0, std::uint32_t window_stride = 1) {
    if (!accepts(tensor) || !device::can_decode_to(tensor, out_type)) return status::unsupported;
    // window_tile_decode finds the tile and checks out and ld against it.
    return detail::window_tile_decode<plane_coding::fixed_marked>(tensor, tile, out, out_type, ld, first_window,
                                                                  window_stride);
  }

  // Starts a tile: checks its size against its escape count and window_start[0].
  TILECODEC_DEV status begin(const device::tensor_ref& tensor, std::uint64_t tile) {
    n_ = pos_ = cursor_ = escapes_ = 0;
    bad_ = false;
    if (!accepts(tensor)) return st_ = status::unsupported;
    device::tile_ref tr;
    st_ = tensor.tile(tile, tr);
    if (st_ != status::success) return st_;
    bytes_ = tr.bytes;
    alphabet_ = tensor.alphabet;
    stored_ = tensor.coding == plane_coding::stored;
    code_ = tensor.fixed();
    shape_ = fixed_marked_shape_of(code_, tr.size());
    if (!stored_) {
      if (fixed_marked_escapes(code_)) escapes_ = start(shape_.windows);
      if ((fixed_marked_escapes(code_) && start(0) != 0) || tr.byte_count != fixed_marked_tile_bytes(shape_, escapes_))
        return st_ = status::corrupt_payload;
    }
    n_ = tr.size();
    return st_;
  }
  [[nodiscard]] TILECODEC_DEV std::uint32_t remaining() const { return n_ - pos_; }

  // The next 32 * Items symbols: item k of lane t is symbol first + 32 k + t (0 past the end).
  template <int Items>
  TILECODEC_DEV std::uint32_t next(std::uint16_t (&sym)[Items]) {
    const std::uint32_t first = pos_, t = detail::lane_id();
    const bool escapes = !stored_ && fixed_marked_escapes(code_);
#pragma unroll
    for (int k = 0; k < Items; ++k) {
      const std::uint32_t group = first + std::uint32_t(k) * 32u, i = group + t;
      std::uint32_t s = 0;
      if (stored_) {
        if (i < n_) s = stored_symbol(bytes_, alphabet_, i);
      } else {
        const std::uint32_t c = i < n_ ? fixed_code_at(bytes_, code_.bits, i) : 1u;
        s = fixed_marked_symbol(code_, c);
        if (escapes) {
          if (group < n_ && group % fixed_marked_window == 0) bad_ |= cursor_ != start(group / fixed_marked_window);
          const std::uint32_t marks = __ballot_sync(detail::full_warp_mask, c == 0);
          if (c == 0) {
            const std::uint32_t e = cursor_ + detail::popc(marks & detail::lanemask_lt());
            s = e < escapes_ ? value(e) : alphabet_;
            bad_ |= s >= alphabet_;
          }
          cursor_ += detail::popc(marks);
        }
      }
      sym[k] = i < n_ ? static_cast<std::uint16_t>(s) : 0;
    }
    pos_ = n_ - first < std::uint32_t(Items) * 32u ? n_ : first + std::uint32_t(Items) * 32u;
    return first;
  }

  // The tile's status; once next() has gone through the whole tile, also whether every window's
  // escape count and the tile's matched.
  TILECODEC_DEV status end() {
    if (st_ != status::success) return st_;
    bool bad = bad_ || (pos_ == n_ && cursor_ != escapes_ && !stored_);
    return __any_sync(detail::full_warp_mask, bad) ? status::corrupt_payload : status::success;
  }

 private:
  TILECODEC_DEV std::uint32_t start(std::uint32_t v) const {
    return reinterpret_cast<const std::uint16_t*>(bytes_ + shape_.code_bytes)[v];
  }
  TILECODEC_DEV std::uint32_t value(std::uint32_t e) const {
    const std::uint8_t* values = bytes_ + shape_.values_offset;
    return shape_.value_bytes == 1 ? values[e] : reinterpret_cast<const std::uint16_t*>(values)[e];
  }

  const std::uint8_t* bytes_ = nullptr;
  fixed_code code_{};
  fixed_marked_shape shape_{};
  std::uint32_t alphabet_ = 256;
  std::uint32_t n_ = 0, pos_ = 0, cursor_ = 0, escapes_ = 0;
  bool stored_ = true, bad_ = false;
  status st_ = status::success;
};

// ---- raw (stored symbols) ----------------------------------------------------------------------------
template <class Tile, class Quant>
class warp_tile_decoder<codec<Tile, Quant, coder::raw>> {
 public:
  using codec_type = codec<Tile, Quant, coder::raw>;
  using table_type = detail::no_table;  // nothing to load
  static constexpr int items_per_group = 1;
  static constexpr std::uint32_t lane_stride = 32;
  struct TempStorage {};  // stored tiles need no shared memory

  TILECODEC_DEV explicit warp_tile_decoder(TempStorage&) {}
  TILECODEC_DEV warp_tile_decoder(TempStorage&, const table_type&) {}

  [[nodiscard]] TILECODEC_DEV static bool accepts(const device::tensor_ref& t) {
    return detail::same_tile_and_quant<Tile, Quant>(t) && t.coding == plane_coding::stored;
  }

  TILECODEC_DEV status decode(const device::tensor_ref& tensor, std::uint64_t tile, void* out, dtype out_type,
                              std::uint64_t ld) {
    if (!accepts(tensor) || !device::can_decode_to(tensor, out_type)) return status::unsupported;
    device::tile_ref tr;
    const status s = tensor.output_tile(tile, out, ld, tr);
    if (s != status::success) return s;
    detail::tile_writer writer;
    writer.set_tensor(tensor, out_type);
    writer.begin_tile(tr, out, ld);
    return detail::stored_tile_to_writer(tr, tensor.alphabet, writer);
  }

  TILECODEC_DEV status begin(const device::tensor_ref& tensor, std::uint64_t tile) {
    n_ = pos_ = 0;
    if (!accepts(tensor)) return st_ = status::unsupported;
    device::tile_ref tr;
    st_ = tensor.tile(tile, tr);
    if (st_ == status::success) {
      bytes_ = tr.bytes;
      n_ = tr.size();
      alphabet_ = tensor.alphabet;
    }
    return st_;
  }
  [[nodiscard]] TILECODEC_DEV std::uint32_t remaining() const { return n_ - pos_; }
  template <int Items>
  TILECODEC_DEV std::uint32_t next(std::uint16_t (&sym)[Items]) {
    const std::uint32_t first = pos_, t = detail::lane_id();
#pragma unroll
    for (int k = 0; k < Items; ++k) {
      const std::uint32_t i = first + std::uint32_t(k) * 32u + t;
      sym[k] = i < n_ ? static_cast<std::uint16_t>(stored_symbol(bytes_, alphabet_, i)) : 0;
    }
    pos_ = n_ - first < std::uint32_t(Items) * 32u ? n_ : first + std::uint32_t(Items) * 32u;
    return first;
  }
  TILECODEC_DEV status end() { return st_; }

 private:
  const std::uint8_t* bytes_ = nullptr;
  std::uint32_t alphabet_ = 256;
  std::uint32_t n_ = 0, pos_ = 0;
  status st_ = status::success;
};

}  // namespace tilecodec

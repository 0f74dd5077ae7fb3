/**
 * Minimal Windows BMP codec. The prebuilt sharp/libvips has no BMP loader, yet image-folder datasets
 * sometimes hold .bmp files. Supports uncompressed 24/32-bit (BI_RGB, BI_BITFIELDS with 8-bit masks)
 * and 1/4/8-bit palette images, bottom-up or top-down.
 */

/** True when the bytes start like a BMP file. */
export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d;
}

/** Decode BMP bytes into HWC RGB. Throws with a description of the unsupported or corrupt part. */
export function decodeBmp(bytes: Uint8Array): { pixels: Uint8Array; width: number; height: number } {
  if (!isBmp(bytes)) throw new Error('not a BMP file (missing "BM" signature)');
  if (bytes.length < 54) throw new Error(`BMP truncated: ${bytes.length} bytes, header needs 54`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(14, true);
  if (headerSize < 40) throw new Error(`unsupported BMP header size ${headerSize} (OS/2 bitmaps are not supported)`);
  const width = view.getInt32(18, true);
  const rawHeight = view.getInt32(22, true);
  const bitsPerPixel = view.getUint16(28, true);
  const compression = view.getUint32(30, true);
  const topDown = rawHeight < 0;
  const height = Math.abs(rawHeight);
  if (width <= 0 || height <= 0 || width > 65535 || height > 65535) throw new Error(`bad BMP dimensions ${width}x${rawHeight}`);
  if (compression !== 0 && !(compression === 3 && (bitsPerPixel === 32 || bitsPerPixel === 16))) {
    throw new Error(`unsupported BMP compression ${compression}`);
  }
  const rowBytes = Math.floor((width * bitsPerPixel + 31) / 32) * 4;
  if (dataOffset + rowBytes * height > bytes.length) {
    throw new Error(`BMP truncated: pixel data needs ${dataOffset + rowBytes * height} bytes, file has ${bytes.length}`);
  }
  const out = new Uint8Array(width * height * 3);
  let palette: Uint8Array | undefined;
  if (bitsPerPixel <= 8) {
    const colors = view.getUint32(46, true) || 1 << bitsPerPixel;
    const paletteStart = 14 + headerSize;
    if (paletteStart + colors * 4 > dataOffset) throw new Error('BMP palette overlaps pixel data');
    palette = bytes.subarray(paletteStart, paletteStart + colors * 4);
  }
  let masks: [number, number, number] = [0xff0000, 0xff00, 0xff];
  if (compression === 3) {
    masks = [view.getUint32(54, true), view.getUint32(58, true), view.getUint32(62, true)];
  } else if (bitsPerPixel === 16) {
    masks = [0x7c00, 0x03e0, 0x001f];
  }
  const channel = (value: number, mask: number): number => {
    if (mask === 0) return 0;
    let shift = 0;
    while (((mask >>> shift) & 1) === 0) shift++;
    const max = mask >>> shift;
    return Math.round((((value & mask) >>> shift) * 255) / max);
  };
  for (let y = 0; y < height; y++) {
    const srcRow = dataOffset + (topDown ? y : height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const d = (y * width + x) * 3;
      if (bitsPerPixel === 24 || (bitsPerPixel === 32 && compression === 0)) {
        const s = srcRow + x * (bitsPerPixel >> 3);
        out[d] = bytes[s + 2]!;
        out[d + 1] = bytes[s + 1]!;
        out[d + 2] = bytes[s]!;
      } else if (bitsPerPixel === 32 || bitsPerPixel === 16) {
        const value = bitsPerPixel === 32 ? view.getUint32(srcRow + x * 4, true) : view.getUint16(srcRow + x * 2, true);
        out[d] = channel(value, masks[0]);
        out[d + 1] = channel(value, masks[1]);
        out[d + 2] = channel(value, masks[2]);
      } else if (palette !== undefined && (bitsPerPixel === 8 || bitsPerPixel === 4 || bitsPerPixel === 1)) {
        const bitPos = x * bitsPerPixel;
        const byte = bytes[srcRow + (bitPos >> 3)]!;
        const index = (byte >> (8 - bitsPerPixel - (bitPos & 7))) & ((1 << bitsPerPixel) - 1);
        if (index * 4 + 2 >= palette.length) throw new Error(`BMP palette index ${index} out of range`);
        out[d] = palette[index * 4 + 2]!;
        out[d + 1] = palette[index * 4 + 1]!;
        out[d + 2] = palette[index * 4]!;
      } else {
        throw new Error(`unsupported BMP bit depth ${bitsPerPixel}`);
      }
    }
  }
  return { pixels: out, width, height };
}

/** Encode HWC RGB as an uncompressed bottom-up 24-bit BMP. */
export function encodeBmp(hwc: Uint8Array, width: number, height: number): Buffer {
  const rowBytes = Math.floor((width * 24 + 31) / 32) * 4;
  const size = 54 + rowBytes * height;
  const out = Buffer.alloc(size);
  out.write('BM', 0, 'latin1');
  out.writeUInt32LE(size, 2);
  out.writeUInt32LE(54, 10);
  out.writeUInt32LE(40, 14);
  out.writeInt32LE(width, 18);
  out.writeInt32LE(height, 22);
  out.writeUInt16LE(1, 26);
  out.writeUInt16LE(24, 28);
  out.writeUInt32LE(rowBytes * height, 34);
  for (let y = 0; y < height; y++) {
    const row = 54 + (height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const s = (y * width + x) * 3;
      out[row + x * 3] = hwc[s + 2]!;
      out[row + x * 3 + 1] = hwc[s + 1]!;
      out[row + x * 3 + 2] = hwc[s]!;
    }
  }
  return out;
}

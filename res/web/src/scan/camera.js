// The camera and the QR decoder: getUserMedia's video, a frame drawn onto a
// canvas a few times a second, its luminance handed to ZXing's QR reader
// (@zxing/library, the maintained JavaScript port of ZXing; only the QR
// classes are imported, so the rest of the library is not bundled).
import QRCodeReader from '@zxing/library/esm/core/qrcode/QRCodeReader';
import BinaryBitmap from '@zxing/library/esm/core/BinaryBitmap';
import HybridBinarizer from '@zxing/library/esm/core/common/HybridBinarizer';
import GlobalHistogramBinarizer from '@zxing/library/esm/core/common/GlobalHistogramBinarizer';
import RGBLuminanceSource from '@zxing/library/esm/core/RGBLuminanceSource';

/** Frames are scaled down to at most this width before decoding. */
const MAX_WIDTH = 960;
/**
 * Successive frames are decoded at these sizes in turn (the canvas scales
 * with smoothing): the module grid then falls on other pixels, which reads a
 * code that one size's sampling misses, as a still camera sends the same
 * frame over and over. Measured with this decoder on 40 real vouchers
 * rasterised 800 px wide (the scanner tests' camera): 1, 0.7 and 0.9 read all
 * 40, 0.6 and 1.5 39, 1.75 38, 1.25 only 21. A voucher from a CI run that
 * none of the earlier set (1, 1.25, 1.5) read decodes at 0.6 and 0.7. One
 * cycle is six frames, under a second.
 */
const SCALES = [1, 0.7, 1.5, 0.9, 0.6, 1.75];
/** No decoded frame is wider than this (CPU). */
const MAX_DECODE_WIDTH = 1440;
/**
 * ZXing's two thresholding strategies: the local one (good with shadows and
 * uneven light) first, then the global histogram, which reads some frames
 * where the local one yields a checksum error.
 */
const BINARIZERS = [HybridBinarizer, GlobalHistogramBinarizer];
const FRAME_INTERVAL_MS = 150;

/** The QR text in an RGBA image (`ImageData`-like), or null. */
export function decodeRgba({ data, width, height }) {
  const lum = new Uint8ClampedArray(width * height);
  for (let i = 0, p = 0; i < lum.length; i += 1, p += 4) {
    // ITU-R BT.601 weights, in integers.
    lum[i] = (data[p] * 77 + data[p + 1] * 150 + data[p + 2] * 29) >> 8;
  }
  const source = new RGBLuminanceSource(lum, width, height);
  for (const Binarizer of BINARIZERS) {
    try {
      return new QRCodeReader().decode(new BinaryBitmap(new Binarizer(source))).getText();
    } catch {
      // No QR in this frame (NotFound), or one that does not read (Checksum,
      // Format): the other binarizer, then the next frame, try again.
    }
  }
  return null;
}

/**
 * Starts the rear camera into `video` and calls `onCode(text)` for each QR
 * read while `isPaused()` is false. Resolves to a function that stops it,
 * once the camera runs; rejects when there is none or access is refused (the
 * typed-in field still works).
 */
export async function startCamera(video, { onCode, isPaused }) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('this browser has no camera access (getUserMedia)');
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: false,
    video: { facingMode: { ideal: 'environment' } },
  });
  video.srcObject = stream;
  video.muted = true;
  video.setAttribute('playsinline', '');
  await video.play();
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  let timer = null;
  let frame = 0;
  const tick = () => {
    if (!isPaused() && video.readyState >= 2 && video.videoWidth > 0) {
      frame = (frame + 1) % SCALES.length;
      const base = Math.min(1, MAX_WIDTH / video.videoWidth);
      const scale = Math.min(base * SCALES[frame], MAX_DECODE_WIDTH / video.videoWidth);
      canvas.width = Math.round(video.videoWidth * scale);
      canvas.height = Math.round(video.videoHeight * scale);
      ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
      const text = decodeRgba(ctx.getImageData(0, 0, canvas.width, canvas.height));
      if (text) onCode(text);
    }
    timer = setTimeout(tick, FRAME_INTERVAL_MS);
  };
  tick();
  return () => {
    clearTimeout(timer);
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
  };
}

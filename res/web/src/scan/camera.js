// The camera and the QR decoder: getUserMedia's video, a frame drawn onto a
// canvas a few times a second, its luminance handed to ZXing's QR reader
// (@zxing/library, the maintained JavaScript port of ZXing; only the QR
// classes are imported, so the rest of the library is not bundled).
import QRCodeReader from '@zxing/library/esm/core/qrcode/QRCodeReader';
import BinaryBitmap from '@zxing/library/esm/core/BinaryBitmap';
import HybridBinarizer from '@zxing/library/esm/core/common/HybridBinarizer';
import RGBLuminanceSource from '@zxing/library/esm/core/RGBLuminanceSource';

/** Frames are scaled down to at most this width before decoding. */
const MAX_WIDTH = 960;
const FRAME_INTERVAL_MS = 150;

/** The QR text in an RGBA image (`ImageData`-like), or null. */
export function decodeRgba({ data, width, height }) {
  const lum = new Uint8ClampedArray(width * height);
  for (let i = 0, p = 0; i < lum.length; i += 1, p += 4) {
    // ITU-R BT.601 weights, in integers.
    lum[i] = (data[p] * 77 + data[p + 1] * 150 + data[p + 2] * 29) >> 8;
  }
  try {
    const bitmap = new BinaryBitmap(new HybridBinarizer(new RGBLuminanceSource(lum, width, height)));
    return new QRCodeReader().decode(bitmap).getText();
  } catch {
    // No QR in this frame (NotFound), or one that does not read (Checksum,
    // Format): the next frame tries again.
    return null;
  }
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
  const tick = () => {
    if (!isPaused() && video.readyState >= 2 && video.videoWidth > 0) {
      const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
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

// JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng's simplified API) decoding and encoding
// into 8-bit RGB or greyscale buffers, for `data import --format folder` and its tests.
// Each function returns 0 on success, or -1 with a message in `err`.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <turbojpeg.h>
#include <png.h>

/// Opens a PNG held in memory (libpng's simplified API); on failure fills `err` and frees `img`.
static inline int dim_png_open(png_image *img, const uint8_t *buf, size_t size, char *err, size_t errlen) {
    memset(img, 0, sizeof *img);
    img->version = PNG_IMAGE_VERSION;
    if (png_image_begin_read_from_memory(img, buf, size)) return 0;
    snprintf(err, errlen, "not a readable PNG (%s)", img->message);
    png_image_free(img);
    return -1;
}

/// Width and height of a JPEG or PNG held in memory; `kind` is 1 for JPEG, 2 for PNG.
static inline int dim_image_header(const uint8_t *buf, size_t size, int *kind, int *width, int *height,
                                   char *err, size_t errlen) {
    if (size >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
        tjhandle h = tjInitDecompress();
        int sub = 0, cs = 0;
        int rc = tjDecompressHeader3(h, buf, (unsigned long)size, width, height, &sub, &cs);
        if (rc != 0) snprintf(err, errlen, "not a readable JPEG (%s)", tjGetErrorStr2(h));
        tjDestroy(h);
        *kind = 1;
        return rc == 0 ? 0 : -1;
    }
    if (size >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0) {
        png_image img;
        if (dim_png_open(&img, buf, size, err, errlen) != 0) return -1;
        *width = (int)img.width; *height = (int)img.height; *kind = 2;
        png_image_free(&img);
        return 0;
    }
    snprintf(err, errlen, "not a JPEG or PNG file");
    return -1;
}

/// Decodes into `out` (width * height * channels bytes, channels 1 = grey or 3 = RGB).
/// Warnings (a truncated or corrupt JPEG stream) count as errors.
static inline int dim_image_decode(const uint8_t *buf, size_t size, int channels, uint8_t *out,
                                   char *err, size_t errlen) {
    int kind = 0, w = 0, h = 0;
    if (dim_image_header(buf, size, &kind, &w, &h, err, errlen) != 0) return -1;
    if (kind == 1) {
        tjhandle t = tjInitDecompress();
        int rc = tjDecompress2(t, buf, (unsigned long)size, out, w, 0, h, channels == 1 ? TJPF_GRAY : TJPF_RGB,
                               TJFLAG_STOPONWARNING | TJFLAG_ACCURATEDCT);
        if (rc != 0) snprintf(err, errlen, "corrupt or truncated JPEG (%s)", tjGetErrorStr2(t));
        tjDestroy(t);
        return rc == 0 ? 0 : -1;
    }
    png_image img;
    if (dim_png_open(&img, buf, size, err, errlen) != 0) return -1;
    img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    if (!png_image_finish_read(&img, NULL, out, 0, NULL)) {
        snprintf(err, errlen, "corrupt or truncated PNG (%s)", img.message);
        png_image_free(&img);
        return -1;
    }
    return 0;
}

/// Encodes width x height x channels bytes as a JPEG (quality 0-100) or PNG file.
static inline int dim_image_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                                  int jpeg, int quality, char *err, size_t errlen) {
    if (jpeg) {
        tjhandle t = tjInitCompress();
        unsigned char *data = NULL;
        unsigned long size = 0;
        int rc = tjCompress2(t, pixels, width, 0, height, channels == 1 ? TJPF_GRAY : TJPF_RGB, &data, &size,
                             channels == 1 ? TJSAMP_GRAY : TJSAMP_444, quality, 0);
        if (rc != 0) { snprintf(err, errlen, "%s", tjGetErrorStr2(t)); tjDestroy(t); return -1; }
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(data, 1, size, f) == size;
        if (f) fclose(f);
        tjFree(data);
        tjDestroy(t);
        if (!ok) { snprintf(err, errlen, "cannot write"); return -1; }
        return 0;
    }
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)width; img.height = (png_uint_32)height;
    img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&img, path, 0, pixels, 0, NULL)) {
        snprintf(err, errlen, "%s", img.message);
        return -1;
    }
    return 0;
}

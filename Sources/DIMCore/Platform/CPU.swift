import Foundation
import CCPU

/// What this CPU can run, read with cpuid. An instruction set counts only when the operating
/// system also saves its registers (XCR0), as under some hypervisors it does not.
public struct CPUInfo: Equatable {
    public var vendor: String
    public var brand: String
    public var family: Int
    public var model: Int
    public var avx2FMA: Bool
    /// AVX-512 F, BW, VL, DQ and CD together: what OpenBLAS's SkylakeX kernels use.
    public var avx512: Bool
    /// AVX-512 BF16 (vdpbf16ps): bfloat16 dot products with float32 accumulation.
    public var avx512BF16: Bool

    public static let current = CPUInfo.read()

    /// AMD Zen 4: family 25 (0x19) with AVX-512 (its other members, Zen 3, have none). Its AVX-512
    /// units are 256 bits wide, which decides the BLAS kernels (`BLASKernels.bestCore`).
    public var isAMDZen4: Bool { vendor == "AuthenticAMD" && family == 25 && avx512 }

    public init(vendor: String, brand: String, family: Int, model: Int, avx2FMA: Bool, avx512: Bool, avx512BF16: Bool) {
        self.vendor = vendor; self.brand = brand; self.family = family; self.model = model
        self.avx2FMA = avx2FMA; self.avx512 = avx512; self.avx512BF16 = avx512BF16
    }

    /// One line for logs: "AMD EPYC (AuthenticAMD family 26 model 2; AVX2+FMA, AVX-512, AVX512_BF16)".
    public var summary: String {
        var sets: [String] = []
        if avx2FMA { sets.append("AVX2+FMA") }
        if avx512 { sets.append("AVX-512") }
        if avx512BF16 { sets.append("AVX512_BF16") }
        let name = brand.isEmpty ? vendor : brand
        let features = sets.isEmpty ? "no AVX2" : sets.joined(separator: ", ")
        return "\(name) (\(vendor) family \(family) model \(model); \(features))"
    }

    static func read() -> CPUInfo {
        var info = CPUInfo(vendor: "unknown", brand: "", family: 0, model: 0,
                           avx2FMA: false, avx512: false, avx512BF16: false)
        guard dim_is_x86() != 0 else { return info }
        func cpuid(_ leaf: UInt32, _ sub: UInt32 = 0) -> (a: UInt32, b: UInt32, c: UInt32, d: UInt32) {
            var a: UInt32 = 0, b: UInt32 = 0, c: UInt32 = 0, d: UInt32 = 0
            _ = dim_cpuid(leaf, sub, &a, &b, &c, &d)
            return (a, b, c, d)
        }
        func bit(_ r: UInt32, _ i: UInt32) -> Bool { (r >> i) & 1 == 1 }
        let l0 = cpuid(0)
        info.vendor = ascii([l0.b, l0.d, l0.c])
        let l1 = cpuid(1)
        let baseFamily = Int((l1.a >> 8) & 0xF), baseModel = Int((l1.a >> 4) & 0xF)
        info.family = baseFamily == 0xF ? baseFamily + Int((l1.a >> 20) & 0xFF) : baseFamily
        info.model = (baseFamily == 0x6 || baseFamily == 0xF) ? baseModel | Int((l1.a >> 16) & 0xF) << 4 : baseModel
        let osxsave = bit(l1.c, 27)
        let xcr0 = osxsave ? dim_xgetbv0() : 0
        let osAVX = xcr0 & 0x6 == 0x6          // XMM and YMM state
        let osAVX512 = xcr0 & 0xE6 == 0xE6     // plus opmask, ZMM_Hi256, Hi16_ZMM
        let l7 = cpuid(7), l71 = cpuid(7, 1)
        info.avx2FMA = osAVX && bit(l1.c, 12) && bit(l7.b, 5)
        info.avx512 = osAVX512 && bit(l7.b, 16) && bit(l7.b, 17) && bit(l7.b, 28) && bit(l7.b, 30) && bit(l7.b, 31)
        info.avx512BF16 = info.avx512 && bit(l71.a, 5)
        if cpuid(0x8000_0000).a >= 0x8000_0004 {
            var words: [UInt32] = []
            for leaf: UInt32 in 0x8000_0002...0x8000_0004 {
                let r = cpuid(leaf)
                words += [r.a, r.b, r.c, r.d]
            }
            info.brand = ascii(words).split(separator: " ").joined(separator: " ")
        }
        return info
    }
}

/// Little-endian registers as ASCII (cpuid's vendor and brand strings), up to the first NUL.
private func ascii(_ words: [UInt32]) -> String {
    var bytes: [UInt8] = []
    for w in words { for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8((w >> UInt32(s)) & 0xFF)) } }
    if let end = bytes.firstIndex(of: 0) { bytes.removeSubrange(end...) }
    return String(decoding: bytes, as: UTF8.self)
}

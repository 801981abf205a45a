using System.Buffers.Binary;

namespace MlNetGuide.Modules;

/// <summary>
/// The CRC-32 that zip headers carry (IEEE 802.3, reflected polynomial 0xEDB88320), computed eight bytes at a time.
/// .NET's zip reader does not check it, and stops at the size a header declares, so a header that lies about an entry's
/// size is only caught by comparing this checksum.
/// </summary>
internal struct ZipCrc32
{
    private static readonly uint[] Table = BuildTable();

    private uint _state;

    public ZipCrc32() => _state = 0xFFFFFFFF;

    /// <summary>The checksum of everything appended so far.</summary>
    public readonly uint Value => ~_state;

    public void Append(ReadOnlySpan<byte> data)
    {
        var t = Table;
        uint crc = _state;
        while (data.Length >= 8)
        {
            uint lo = BinaryPrimitives.ReadUInt32LittleEndian(data) ^ crc;
            uint hi = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            crc = t[7 * 256 + (lo & 0xFF)] ^ t[6 * 256 + ((lo >> 8) & 0xFF)] ^ t[5 * 256 + ((lo >> 16) & 0xFF)] ^ t[4 * 256 + (lo >> 24)]
                ^ t[3 * 256 + (hi & 0xFF)] ^ t[2 * 256 + ((hi >> 8) & 0xFF)] ^ t[256 + ((hi >> 16) & 0xFF)] ^ t[hi >> 24];
            data = data[8..];
        }
        foreach (byte b in data) crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8);
        _state = crc;
    }

    // Table k maps a byte to its CRC contribution k bytes further back ("slicing by 8").
    private static uint[] BuildTable()
    {
        var t = new uint[8 * 256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        for (int i = 0; i < 256; i++)
            for (int k = 1; k < 8; k++)
                t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[t[(k - 1) * 256 + i] & 0xFF];
        return t;
    }
}

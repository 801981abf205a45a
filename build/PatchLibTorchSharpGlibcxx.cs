// MSBuild inline task (RoslynCodeTaskFactory): marks libLibTorchSharp.so's GLIBCXX_3.4.32 version need as weak.
// Why: see build/TorchSharpNativeFix.targets. No ELF library is served that edits .gnu.version_r in place,
// and the edit is one flag bit, so it is written here with full validation of every offset it reads.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
using Task = Microsoft.Build.Utilities.Task;

public class PatchLibTorchSharpGlibcxx : Task
{
    const string LibraryName = "libLibTorchSharp.so";
    const string NeededVersion = "GLIBCXX_3.4.32";
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    [Required]
    public string Folder { get; set; } = "";

    public override bool Execute()
    {
        if (!Directory.Exists(Folder))
            return true;
        var candidates = new List<string>();
        foreach (var rel in new[] { LibraryName, Path.Combine("runtimes", "linux-x64", "native", LibraryName) })
        {
            var path = Path.Combine(Folder, rel);
            if (File.Exists(path))
                candidates.Add(path);
        }
        if (candidates.Count == 0)
            return true;
        if (SystemLibstdcxxHasVersion())
            return true;

        foreach (var path in candidates)
        {
            try
            {
                var bytes = File.ReadAllBytes(path);
                var result = Patch(bytes);
                if (result == null)
                    continue; // already weak: nothing to do
                var stamp = File.GetLastWriteTimeUtc(path);
                // Write a new file and rename over the old one, so a hard link into the NuGet cache is never edited.
                var tmp = path + ".mlnetguide-tmp";
                File.WriteAllBytes(tmp, bytes);
                File.SetLastWriteTimeUtc(tmp, stamp); // keep MSBuild's incremental copy from re-copying it
                File.Replace(tmp, path, null);
                Log.LogMessage(MessageImportance.High, // one line per patched copy
                    $"MlNetGuide: marked {NeededVersion} weak in {Path.GetFullPath(path)} ({result}); see README 'Platform notes'.");
            }
            catch (InvalidDataException ex)
            {
                Log.LogError($"MlNetGuide: refusing to patch {path}: {ex.Message}");
                return false;
            }
        }
        return !Log.HasLoggedErrors;
    }

    /// <summary>True when this machine's libstdc++ already provides the version, so no patch is needed.</summary>
    static bool SystemLibstdcxxHasVersion()
    {
        var dirs = new[] { "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib",
                           "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu" };
        var marker = Encoding.ASCII.GetBytes(NeededVersion + "\0");
        foreach (var dir in dirs)
        {
            var lib = Path.Combine(dir, "libstdc++.so.6");
            if (!File.Exists(lib))
                continue;
            var data = File.ReadAllBytes(lib);
            return IndexOf(data, marker) >= 0;
        }
        return false;
    }

    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i <= haystack.Length - needle.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }

    /// <summary>
    /// Sets VER_FLG_WEAK on the vernaux entry named GLIBCXX_3.4.32. Returns a description of the edit, or null when
    /// the flag was already set. Throws InvalidDataException for anything that is not the ELF we expect.
    /// </summary>
    public static string? Patch(byte[] elf)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2) throw new InvalidDataException("not a 64-bit ELF (EI_CLASS != ELFCLASS64)");
        if (elf[5] != 1) throw new InvalidDataException("not little-endian (EI_DATA != ELFDATA2LSB)");
        if (U16(elf, 16) != 3) throw new InvalidDataException("not a shared object (e_type != ET_DYN)");

        ulong shoff = U64(elf, 0x28);
        int shentsize = U16(elf, 0x3A), shnum = U16(elf, 0x3C);
        if (shentsize != 64 || shnum == 0 || shoff + (ulong)(shnum * shentsize) > (ulong)elf.Length)
            throw new InvalidDataException($"section header table out of bounds (offset {shoff}, {shnum} x {shentsize})");

        int found = 0;
        string? edit = null;
        bool alreadyWeak = false;
        for (int i = 0; i < shnum; i++)
        {
            int sh = checked((int)shoff + i * shentsize);
            if (U32(elf, sh + 4) != ShtGnuVerneed) continue;
            found++;
            ulong secOff = U64(elf, sh + 0x18), secSize = U64(elf, sh + 0x20);
            uint link = U32(elf, sh + 0x28);
            uint count = U32(elf, sh + 0x2C); // sh_info: number of Verneed entries
            Check(secOff + secSize <= (ulong)elf.Length, ".gnu.version_r out of bounds");
            Check(link < shnum, ".gnu.version_r links to a missing string table");
            int strSh = checked((int)shoff + (int)link * shentsize);
            ulong strOff = U64(elf, strSh + 0x18), strSize = U64(elf, strSh + 0x20);
            Check(strOff + strSize <= (ulong)elf.Length, "dynamic string table out of bounds");

            ulong vn = secOff;
            for (uint n = 0; n < count; n++)
            {
                Check(vn + 16 <= secOff + secSize, "Verneed entry out of bounds");
                int v = (int)vn;
                Check(U16(elf, v) == 1, "unknown Verneed version");
                int cnt = U16(elf, v + 2);
                ulong aux = vn + U32(elf, v + 8);
                for (int a = 0; a < cnt; a++)
                {
                    Check(aux + 16 <= secOff + secSize, "Vernaux entry out of bounds");
                    int x = (int)aux;
                    uint nameOff = U32(elf, x + 8);
                    Check(nameOff < strSize, "Vernaux name out of bounds");
                    if (CStringEquals(elf, (int)(strOff + nameOff), (int)(strOff + strSize), NeededVersion))
                    {
                        ushort flags = U16(elf, x + 4);
                        if ((flags & VerFlgWeak) != 0) alreadyWeak = true;
                        else
                        {
                            ushort patched = (ushort)(flags | VerFlgWeak);
                            elf[x + 4] = (byte)patched;
                            elf[x + 5] = (byte)(patched >> 8);
                            edit = $"vna_flags 0x{flags:x} -> 0x{patched:x} at file offset 0x{x + 4:x}";
                        }
                    }
                    uint next = U32(elf, x + 12);
                    if (next == 0) break;
                    aux += next;
                }
                uint vnNext = U32(elf, v + 12);
                if (vnNext == 0) break;
                vn += vnNext;
            }
        }
        if (found != 1)
            throw new InvalidDataException($"expected one .gnu.version_r section, found {found}");
        if (edit == null && !alreadyWeak)
            throw new InvalidDataException($"no version need named {NeededVersion}: is this a different TorchSharp build?");
        return edit;
    }

    static void Check(bool ok, string what)
    {
        if (!ok) throw new InvalidDataException(what);
    }

    static bool CStringEquals(byte[] data, int start, int limit, string expected)
    {
        if (start + expected.Length >= limit) return false;
        for (int i = 0; i < expected.Length; i++)
            if (data[start + i] != (byte)expected[i]) return false;
        return data[start + expected.Length] == 0;
    }

    static ushort U16(byte[] b, int o) { Check(o + 2 <= b.Length, "read past end of file"); return (ushort)(b[o] | b[o + 1] << 8); }
    static uint U32(byte[] b, int o) { Check(o + 4 <= b.Length, "read past end of file"); return BitConverter.ToUInt32(b, o); }
    static ulong U64(byte[] b, int o) { Check(o + 8 <= b.Length, "read past end of file"); return BitConverter.ToUInt64(b, o); }
}

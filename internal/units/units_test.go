package units

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"512KiB": 512 << 10, "64MiB": 64 << 20, "10GiB": 10 << 30, "10G": 10 << 30,
		"10GB": 10e9, "4096": 4096, "1.5MiB": 3 << 19, " 2 k ": 2048, "0": 0, "7b": 7,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "ten", "1e400", "NaN", "0x10", "1_000", "10 XB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 64 << 20: "64.0 MiB", 10 << 30: "10.0 GiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512KiB", "10G", "1.5 MiB", "", "-3", "1e18GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
	})
}

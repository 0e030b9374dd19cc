import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The API the dev server proxies to (scripts/dev's address); the build itself needs none.
const api = process.env.CASCADE_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../app/web/dist",
    emptyOutDir: true,
    // No inline module preload polyfill: the CSP is script-src 'self'.
    modulePreload: { polyfill: false },
    sourcemap: false,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    proxy: {
      "/api": { target: api, ws: true },
      "/health": api,
    },
  },
  preview: {
    proxy: {
      "/api": { target: api, ws: true },
      "/health": api,
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});

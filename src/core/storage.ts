// The storage object lives in ./storage/, one module per concern.
export * from "./storage/index.js";
